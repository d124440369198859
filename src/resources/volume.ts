import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { formatSize } from '../compose/units.js';
import { readQcow2Header } from '../observe/qcow2.js';
import { isMissing } from '../util/fs.js';
import type { ExecContext, Kind } from './kind.js';
import { UserError } from '../errors.js';
import { QmpClient } from '../observe/qmp.js';
import { inspect } from '../state/inspect.js';
import type { AppliedRecord } from '../state/records.js';
import type { ResolvedMount } from '../compose/resolve.js';
import { growFilesystem } from '../cloudinit/render.js';
import { asRootInGuest } from './instance.js';

// Named volumes: qcow2 files under volumes/<project>/, created once, grown when the file asks
// for more (online where a VM has it: QMP block_resize, then resize2fs in the guest), never
// shrunk (refused: it would lose data) and never removed as a side effect: only `down
// --volumes` plans their removal.

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

/**
 * Grows a volume: with no VM of it running, the file (`qemu-img resize`; its filesystem grows
 * when a guest next mounts it, render.ts: mountCommand); else in each running QEMU that has it
 * (block_resize, which grows the file too), then the filesystem over SSH in the one that
 * writes it.
 */
async function resize(spec: VolumeSpec, ctx: ExecContext): Promise<void> {
  const users = ctx.project.instances.filter((i) => spec.services.includes(i.service));
  const running: { name: string; applied: AppliedRecord; mount: ResolvedMount }[] = [];
  for (const user of users) {
    const state = await inspect(user.name, ctx.layout.instance(user.name), { qmp: true });
    const mount = ctx.project.services
      .find((s) => s.name === user.service)!
      .mounts.find((m) => m.type === 'volume' && m.source === spec.name);
    if (state.pid !== undefined && state.applied && mount)
      running.push({ name: user.name, applied: state.applied, mount });
  }
  if (running.length === 0) {
    const { execa } = await import('execa');
    await execa(ctx.qemu.img, ['resize', '-q', spec.path, String(spec.size)]);
    return;
  }
  for (const { name, mount } of running) {
    const qmp = await QmpClient.connect(ctx.layout.instance(name).qmpSocket, { timeoutMs: 10_000 });
    try {
      await qmp.execute('block_resize', { device: mount.device, size: spec.size });
    } finally {
      qmp.close();
    }
  }
  for (const { applied, mount } of running.filter((r) => !r.mount.readOnly))
    await asRootInGuest(ctx, applied, growFilesystem(mount), `grow the filesystem of volume ${spec.name}`);
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
    if (!spec || !spec.services.some((s) => ctx.targetOf(s) === 'running')) return [];
    const now = observed.virtualSize;
    if (observed.exists && now !== undefined && now > spec.size)
      throw new UserError(
        `volumes.${name}.size is ${formatSize(spec.size)}, smaller than the volume (${formatSize(now)}); a volume never shrinks (it would lose data): set ${formatSize(now)} or more`,
      );
    if (observed.exists && now !== undefined && now < spec.size)
      return [
        {
          kind: 'volume',
          name,
          verb: 'resize',
          cause: 'changed',
          reason: `grows from ${formatSize(now)} to ${formatSize(spec.size)}`,
        },
      ];
    if (observed.exists) return [];
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
    resize: ({ spec }, ctx) => resize(spec!, ctx),
    remove: async ({ action }, ctx) => {
      await rm(ctx.layout.volume(action.name), { force: true });
    },
  },
};
