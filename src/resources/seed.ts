import { createHash } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  ResolvedInstance,
  ResolvedMount,
  ResolvedProject,
  ResolvedService,
} from '../compose/resolve.js';
import { buildSeedIso, seedHash, type SeedFile } from '../cloudinit/iso.js';
import { renderSeed, type SeedKeys } from '../cloudinit/render.js';
import type { InstanceLayout } from '../state/layout.js';
import { exists, writeAtomically } from '../util/fs.js';
import { hostKeyName, projectKeySpec, read as readKeypair } from './keypair.js';
import { startsVm, type Kind } from './kind.js';

// The cloud-init NoCloud seed of an instance: `seed-<hash8>.iso`, named by a hash of everything
// its content is rendered from (render.ts), so that a plan knows whether the seed on disk is the
// one wanted without rendering it. The content needs the instance's keys, which may not exist
// when the plan is made (a new instance): then the plan says the seed is to be written, and the
// writer renders it with the keys that exist by then. The seed's identity, which decides
// whether the guest must be made again, never depends on the keys or on rendering: it is a hash
// of the first boot's inputs.

export interface SeedSpec {
  instance: string;
  service: string;
  /** What the seed is rendered from. */
  project: ResolvedProject;
  resolvedService: ResolvedService;
  resolved: ResolvedInstance;
  /** The key pairs the seed carries: the project's login key and the instance's host key. */
  keyDirs: { project: string; host: string };
  layout: InstanceLayout;
  /**
   * What the guest's first boot made of the seed: a hash of its inputs without the /etc/hosts
   * table, the mounts and the keys. Adding a replica changes every instance's hosts table, and
   * a mount edit only the QEMU arguments and the fstab lines the guest rewrites each boot
   * (render.ts, fstabSync); neither needs a new root disk. (A key that changed is the
   * instance's to judge: instance.ts compares it with the applied record.)
   */
  identity: string;
  /** The keys, the hash of what the content is rendered from and the file's path, when the
   * keys exist; undefined until they are made. */
  keys?: SeedKeys;
  hash?: string;
  path?: string;
}

export interface SeedObserved {
  /** Whether the seed file of the desired content is there (false while its keys are to be made). */
  exists: boolean;
  /**
   * Not there, but a seed of the same content is, named as holos named seeds before (by the
   * hash of the rendered files): it is written once under its new name, as an upgrade.
   */
  namedByContent?: boolean;
  /**
   * Not there, but the same inputs' seed of an older seedFormat is: it serves the guest as it
   * is (its first boot is past) and is written in the current format when the instance next starts.
   */
  olderFormat?: boolean;
}

/** The name of a seed file (state/layout.ts: `seed-<hash8>.iso`). */
const seedFile = /^seed-[0-9a-f]{8}\.iso$/;

const toFiles = (rendered: Record<string, string>): SeedFile[] =>
  Object.entries(rendered).map(([name, content]) => ({ name, content }));

/**
 * The instance's NICs as the seed's hashes take them. One on the default network alone is
 * hashed as it was before named networks (its `ip` and `mac`), so an upgrade keeps its seed
 * and its disk.
 */
function addressesOf(instance: ResolvedInstance): Record<string, unknown> {
  const [only, ...more] = instance.nics;
  return only?.network === 'default' && only.prefix === 24 && more.length === 0
    ? { ip: only.ip, mac: only.mac }
    : { nics: instance.nics };
}

/**
 * What compose's guest keys add to a seed's inputs (environment, main service, hostname), only
 * when a service has them: a seed without any hashes as it did before they existed.
 */
function guestInputs(service: ResolvedService, instance: ResolvedInstance): Record<string, unknown> {
  return {
    ...(Object.keys(service.environment).length > 0 && { environment: service.environment }),
    ...(service.main && { main: service.main }),
    ...(instance.hostname !== instance.name && { hostname: instance.hostname }),
  };
}

/** The identity of a seed: every input of the first boot, and nothing that may change without one. */
export function seedIdentity(service: ResolvedService, instance: ResolvedInstance): string {
  const inputs = {
    instance: instance.name,
    ...addressesOf(instance),
    userMac: instance.userMac,
    user: service.user,
    image: { kind: service.image.kind, ref: service.image.kind === 'local' ? '' : service.image.ref },
    cloud_init: service.spec.cloud_init,
    ...guestInputs(service, instance),
  };
  return createHash('sha256').update(JSON.stringify(inputs)).digest('hex').slice(0, 16);
}

/**
 * Bump when render.ts writes other bytes from the same inputs (a new cloud-init key, another
 * quoting): every seed's name changes with it, and each is written again when its instance next
 * starts. 2: runcmd reports the end of the first boot (render.ts: firstBootReport). 3: a
 * writable volume's filesystem grows to its device when mounted (render.ts: mountCommand).
 */
const seedFormat = 3;

/** Hashes of hosts tables, each computed once: instances on the same networks share one table. */
const hostsDigests = new WeakMap<Record<string, string>, string>();

/** A hash of an instance's hosts table: in the seed's name, and in the record of what a running guest has. */
export function hostsDigest(hosts: Record<string, string>): string {
  let digest = hostsDigests.get(hosts);
  if (!digest) {
    digest = createHash('sha256').update(JSON.stringify(hosts)).digest('hex');
    hostsDigests.set(hosts, digest);
  }
  return digest;
}

/**
 * What the seed renders of a mount: a bind mount's host path is QEMU's business, not the
 * guest's, so a moved project directory does not rewrite its seeds.
 */
const renderedOfMount = (mount: ResolvedMount) => ({
  type: mount.type,
  target: mount.target,
  readOnly: mount.readOnly,
  device: mount.device,
  label: mount.type === 'volume' ? mount.source : undefined,
  ...(mount.type === 'bind' && { automount: mount.automount, options: mount.options }),
});

/**
 * A hash of every input renderSeed reads (and of seedFormat): the same inputs render the same
 * files, so this names the seed file without rendering it. A test checks that renderSeed reads
 * nothing else.
 */
export function seedContentHash(
  project: ResolvedProject,
  service: ResolvedService,
  instance: ResolvedInstance,
  keys: SeedKeys,
  format = seedFormat,
): string {
  const inputs = {
    format,
    instance: { name: instance.name, ...addressesOf(instance), userMac: instance.userMac },
    user: service.user,
    os: service.image.os,
    cloud_init: service.spec.cloud_init,
    mounts: service.mounts.map(renderedOfMount),
    hosts: hostsDigest(instance.hosts),
    keys,
    ...guestInputs(service, instance),
  };
  return createHash('sha256').update(JSON.stringify(inputs)).digest('hex');
}

/** The files of the seed, rendered. */
export const seedFiles = (spec: SeedSpec, keys: SeedKeys): SeedFile[] =>
  toFiles({ ...renderSeed(spec.project, spec.resolvedService, spec.resolved, keys) });

function named(spec: SeedSpec, keys: SeedKeys) {
  const hash = seedContentHash(spec.project, spec.resolvedService, spec.resolved, keys);
  return { keys, hash, path: spec.layout.seed(hash) };
}

/** The seed spec of an instance; named when both keys are given. */
export function seedSpec(
  project: ResolvedProject,
  service: ResolvedService,
  instance: ResolvedInstance,
  layout: InstanceLayout,
  keyDirs: SeedSpec['keyDirs'],
  keys?: SeedKeys,
): SeedSpec {
  const spec: SeedSpec = {
    instance: instance.name,
    service: service.name,
    project,
    resolvedService: service,
    resolved: instance,
    keyDirs,
    layout,
    identity: seedIdentity(service, instance),
  };
  return keys ? { ...spec, ...named(spec, keys) } : spec;
}

/**
 * Writes the seed ISO (with the keys planned, or those on disk now when they were made after the
 * plan) and removes the instance's older seeds (QEMU keeps an open one readable). Returns the
 * file's path.
 */
export async function write(spec: SeedSpec): Promise<string> {
  const { keys, path } = spec.keys && spec.path ? { keys: spec.keys, path: spec.path } : await nameNow(spec);
  await writeAtomically(path, buildSeedIso(seedFiles(spec, keys)), 0o600);
  for (const name of await readdir(spec.layout.dir))
    if (seedFile.test(name) && join(spec.layout.dir, name) !== path)
      await rm(join(spec.layout.dir, name), { force: true });
  return path;
}

/** Names the seed with the keys on disk now (they were made earlier in the apply). */
async function nameNow(spec: SeedSpec) {
  const [project, host] = await Promise.all([
    readKeypair({ dir: spec.keyDirs.project }),
    readKeypair({ dir: spec.keyDirs.host }),
  ]);
  if (!project || !host) throw new Error('its seed needs its keys, and they are missing');
  return named(spec, { projectPublicKey: project.publicKey, hostKey: host });
}

/** The seed file QEMU is to be given: the one `write` left in the instance's directory. */
export async function seedFileOf(layout: InstanceLayout): Promise<string | undefined> {
  const names = await readdir(layout.dir).catch(() => []);
  const found = names.find((n) => seedFile.test(n));
  return found && join(layout.dir, found);
}

export const seed: Kind<'seed', SeedSpec, SeedObserved> = {
  kind: 'seed',
  part: true,

  desired({ project, layout, keys }) {
    const services = new Map(project.services.map((s) => [s.name, s]));
    const projectKey = projectKeySpec(layout);
    return new Map(
      project.instances.map((i) => {
        const hostKey = keys.hosts[i.name];
        const keyDirs = { project: projectKey.dir, host: layout.instance(i.name).hostKey };
        const known = keys.project && hostKey ? { projectPublicKey: keys.project, hostKey } : undefined;
        return [
          i.name,
          seedSpec(project, services.get(i.service)!, i, layout.instance(i.name), keyDirs, known),
        ];
      }),
    );
  },

  async observe(_name, spec) {
    if (!spec?.path || !spec.keys) return { exists: false };
    if (await exists(spec.path)) return { exists: true };
    const { project, resolvedService, resolved, keys, layout } = spec;
    for (let format = seedFormat - 1; format >= 1; format--)
      if (await exists(layout.seed(seedContentHash(project, resolvedService, resolved, keys, format))))
        return { exists: false, olderFormat: true };
    // Compared the old way, by rendering, only when the file of this name is missing: once it is
    // written under its new name, no plan renders it again.
    const byContent = spec.layout.seed(seedHash(seedFiles(spec, spec.keys)));
    return (await exists(byContent)) ? { exists: false, namedByContent: true } : { exists: false };
  },

  diff(name, spec, observed, ctx) {
    if (!spec || observed.exists || ctx.targetOf(spec.service, name) !== 'running') return [];
    // Rewritten while the instance is left as it is, only the seed's hosts table can have moved
    // (or its name, from an older holos).
    const verb = ctx.planned('instance', name)?.verb;
    const withInstance = verb !== undefined && startsVm.has(verb);
    if (observed.olderFormat && !withInstance) return [];
    const upgraded = !withInstance && observed.namedByContent === true;
    return [
      {
        kind: 'seed',
        name,
        instance: name,
        service: spec.service,
        verb: 'write',
        cause: withInstance ? 'missing' : upgraded ? 'upgraded' : 'hosts-changed',
        reason: upgraded
          ? 'named by an older holos; the same content under its new name (no VM action)'
          : !withInstance
            ? 'the hosts table changed; the guest reads it at its next boot'
            : spec.hash
              ? `content ${spec.hash.slice(0, 8)}`
              : 'new content, with the keys made in this apply',
        needs: [`keypair:${ctx.project.name}`, `keypair:${hostKeyName(name)}`],
      },
    ];
  },

  execute: {
    write: async ({ spec }) => {
      await write(spec!);
    },
  },
};
