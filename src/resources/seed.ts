import { readdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { ResolvedProject, ResolvedService, ResolvedInstance } from '../compose/resolve.js';
import { buildSeedIso, seedHash, type SeedFile } from '../cloudinit/iso.js';
import { renderSeed, type SeedKeys } from '../cloudinit/render.js';
import { exists, writeAtomically } from '../util/fs.js';
import type { Action, Target } from './types.js';

// The cloud-init NoCloud seed of an instance, named by the hash of its content.

export interface SeedSpec {
  instance: string;
  files: SeedFile[];
  /** Hash of the whole content: names the file. */
  hash: string;
  /**
   * Hash of the content without the /etc/hosts table and the mounts: what the guest's first
   * boot made of it (see instance.ts). Adding a replica changes every instance's hosts table,
   * and a mount edit only the QEMU arguments and the fstab lines the guest rewrites each boot
   * (render.ts, fstabSync); neither needs a new root disk.
   */
  identity: string;
  path: string;
}

export interface SeedObserved {
  exists: boolean;
}

const toFiles = (rendered: Record<string, string>): SeedFile[] =>
  Object.entries(rendered).map(([name, content]) => ({ name, content }));

export function desired(
  project: ResolvedProject,
  service: ResolvedService,
  instance: ResolvedInstance,
  keys: SeedKeys,
  pathFor: (hash: string) => string,
): SeedSpec {
  const files = toFiles({ ...renderSeed(project, service, instance, keys) });
  const withoutHosts = { ...project, network: { ...project.network, hosts: {} } };
  const withoutMounts = { ...service, mounts: [] };
  const identity = seedHash(toFiles({ ...renderSeed(withoutHosts, withoutMounts, instance, keys) }));
  const hash = seedHash(files);
  return { instance: instance.name, files, hash, identity, path: pathFor(hash) };
}

export async function observe(spec: SeedSpec): Promise<SeedObserved> {
  return {
    exists: await exists(spec.path),
  };
}

export function diff(spec: SeedSpec, observed: SeedObserved, target: Target): Action[] {
  if (target !== 'running' || observed.exists) return [];
  return [
    {
      kind: 'seed',
      name: spec.instance,
      instance: spec.instance,
      verb: 'write',
      reason: `content ${spec.hash.slice(0, 8)}`,
    },
  ];
}

/** Writes the seed ISO and removes the instance's older seeds (QEMU keeps an open one readable). */
export async function write(spec: SeedSpec): Promise<void> {
  await writeAtomically(spec.path, buildSeedIso(spec.files), 0o600);
  const dir = dirname(spec.path);
  for (const name of await readdir(dir))
    if (/^seed-[0-9a-f]{8}\.iso$/.test(name) && name !== basename(spec.path))
      await rm(join(dir, name), { force: true });
}
