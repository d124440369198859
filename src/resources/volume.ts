import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { formatSize } from '../compose/units.js';
import { readQcow2Header } from '../observe/qcow2.js';
import { isMissing } from '../util/fs.js';
import type { Kind } from './kind.js';

// Named volumes: qcow2 files under volumes/<project>/, created once. Never resized down and
// never removed as a side effect: only `down --volumes` plans their removal.

export interface VolumeSpec {
  name: string;
  path: string;
  size: number;
  /** The services that mount it. */
  services: string[];
}

export interface VolumeObserved {
  exists: boolean;
  virtualSize?: number;
}

export async function observeVolume(path: string): Promise<VolumeObserved> {
  try {
    const header = await readQcow2Header(path);
    return { exists: true, virtualSize: header?.virtualSize };
  } catch (error) {
    if (isMissing(error)) return { exists: false };
    throw error;
  }
}

export async function create(spec: VolumeSpec, qemuImg: string): Promise<void> {
  if ((await observeVolume(spec.path)).exists) return;
  await mkdir(dirname(spec.path), { recursive: true, mode: 0o700 });
  // Made beside the target and renamed, so a crash never leaves a half-made volume under its name.
  const partial = `${spec.path}.partial`;
  const { execa } = await import('execa');
  await execa(qemuImg, ['create', '-q', '-f', 'qcow2', partial, String(spec.size)]);
  await rename(partial, spec.path);
}

export const volume: Kind<'volume', VolumeSpec, VolumeObserved> = {
  kind: 'volume',

  /** The volumes some service with replicas mounts; a declared but unused volume is not made. */
  desired({ project, layout }) {
    const specs = new Map<string, VolumeSpec>();
    for (const [name, { size }] of Object.entries(project.volumes)) {
      const services = project.services
        .filter((s) => s.spec.replicas > 0 && s.mounts.some((m) => m.type === 'volume' && m.source === name))
        .map((s) => s.name);
      if (services.length > 0) specs.set(name, { name, path: layout.volume(name), size, services });
    }
    return specs;
  },

  /** Every volume of the project on disk, used by the file or not (for `down --volumes`). */
  async onHost(layout) {
    const names = await readdir(layout.volumesDir).catch(() => []);
    return names.filter((n) => n.endsWith('.qcow2')).map((n) => n.slice(0, -'.qcow2'.length));
  },

  observe: (name, _spec, layout) => observeVolume(layout.volume(name)),

  diff(name, spec, observed, ctx) {
    if (ctx.removeVolumes && observed.exists)
      return [{ kind: 'volume', name, verb: 'remove', cause: 'requested', reason: 'down --volumes' }];
    if (!spec || observed.exists || !spec.services.some((s) => ctx.targetOf(s) === 'running')) return [];
    return [
      {
        kind: 'volume',
        name,
        verb: 'create',
        cause: 'missing',
        reason: `new volume of ${formatSize(spec.size)}`,
      },
    ];
  },

  execute: {
    create: ({ spec }, ctx) => create(spec!, ctx.qemu.img),
    remove: async ({ action }, ctx) => {
      await rm(ctx.layout.volume(action.name), { force: true });
    },
  },
};
