import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { formatSize } from '../compose/units.js';
import type { ResolvedProject } from '../compose/resolve.js';
import { readQcow2Header } from '../observe/qcow2.js';
import { isMissing } from '../util/fs.js';
import type { ProjectLayout } from './layout.js';
import type { Action, Target } from './types.js';

// Named volumes: qcow2 files under volumes/<project>/, created once. Never resized down and
// never removed as a side effect: only `down --volumes` plans their removal.

export interface VolumeSpec {
  name: string;
  path: string;
  size: number;
}

export interface VolumeObserved {
  exists: boolean;
  virtualSize?: number;
}

/** The volumes some service mounts; a declared but unused volume is not made. */
export function desired(project: ResolvedProject, layout: ProjectLayout): VolumeSpec[] {
  const used = new Set(
    project.services.flatMap((s) => (s.spec.replicas > 0 ? s.mounts : [])).filter((m) => m.type === 'volume'),
  );
  return Object.entries(project.volumes)
    .filter(([name]) => [...used].some((m) => m.source === name))
    .map(([name, { size }]) => ({ name, path: layout.volume(name), size }));
}

export async function observe(spec: VolumeSpec): Promise<VolumeObserved> {
  try {
    const header = await readQcow2Header(spec.path);
    return { exists: true, virtualSize: header?.virtualSize };
  } catch (error) {
    if (isMissing(error)) return { exists: false };
    throw error;
  }
}

export function diff(spec: VolumeSpec, observed: VolumeObserved, target: Target): Action[] {
  if (target !== 'running' || observed.exists) return [];
  return [
    { kind: 'volume', name: spec.name, verb: 'create', reason: `new volume of ${formatSize(spec.size)}` },
  ];
}

/** The volumes of the project on disk, whatever the file says now (for `down --volumes`). */
export async function onDisk(layout: ProjectLayout): Promise<string[]> {
  const names = await readdir(layout.volumesDir).catch(() => []);
  return names.filter((n) => n.endsWith('.qcow2')).map((n) => n.slice(0, -'.qcow2'.length));
}

/** `down --volumes`: every volume of the project on disk goes, after its instances. */
export function removals(names: readonly string[]): Action[] {
  return names.map((name) => ({ kind: 'volume', name, verb: 'remove', reason: 'down --volumes' }));
}

export async function remove(layout: ProjectLayout, name: string): Promise<void> {
  await rm(layout.volume(name), { force: true });
}

export async function create(spec: VolumeSpec, qemuImg: string): Promise<void> {
  if ((await observe(spec)).exists) return;
  await mkdir(dirname(spec.path), { recursive: true, mode: 0o700 });
  // Made beside the target and renamed, so a crash never leaves a half-made volume under its name.
  const partial = `${spec.path}.partial`;
  const { execa } = await import('execa');
  await execa(qemuImg, ['create', '-q', '-f', 'qcow2', partial, String(spec.size)]);
  await rename(partial, spec.path);
}
