import { mkdir, rm, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { readImageRecord } from '../images/store.js';
import { readQcow2Header } from '../observe/qcow2.js';
import { identifyFile, type FileIdentity } from '../util/digest.js';
import { isMissing, readJson, writeAtomically } from '../util/fs.js';
import { formatSize } from '../compose/units.js';
import { serviceImage, type ImageSpec } from './image.js';
import { startsVm, type Change, type DesiredInput, type Kind } from './kind.js';

// The root disk of an instance: a qcow2 overlay on the base image, so the base is shared and
// never written. Its backing chain is read from the header on every observe. Beside it,
// `disk.base.json` records which file the base was (device, inode, size, digest) when the disk
// was made, so that a base that merely moved (the project directory was renamed, or copied
// elsewhere) is recognised as the same file and the disk rebased, not recreated.

export interface OverlaySpec {
  instance: string;
  service: string;
  path: string;
  base: ImageSpec;
  /** Bytes; undefined keeps the base image's size. */
  size?: number;
  /** `disk.base.json`: the identity of the base the disk was made on. */
  baseRecord: string;
  /** The state dir's cache of file digests (util/digest.ts). */
  digestCache: string;
}

export interface OverlayObserved {
  exists: boolean;
  backingFile?: string;
  backingFormat?: string;
  virtualSize?: number;
  /**
   * Only when the disk's backing file is not the desired base: whether the desired base is the
   * very file the disk was made on (`same`: moved or copied, by inode or digest) or another.
   */
  base?: 'same' | 'other';
}

export async function observeOverlay(spec: OverlaySpec): Promise<OverlayObserved> {
  try {
    const header = await readQcow2Header(spec.path);
    if (header?.backingFile === undefined || header.backingFile === spec.base.path)
      return { exists: true, ...header };
    return { exists: true, ...header, base: await sameBase(spec, header.backingFile) };
  } catch (error) {
    if (isMissing(error)) return { exists: false };
    throw error;
  }
}

/**
 * Whether `spec.base.path` is the file the disk was made on, which was at `was`: one inode (a
 * rename on one file system, a hard link), or, once nothing is left at `was` (it moved across
 * file systems, or was copied and the original deleted), the recorded size and digest. While
 * another file is still at `was`, a different path is a different image, as the file says.
 */
async function sameBase(spec: OverlaySpec, was: string): Promise<'same' | 'other'> {
  const now = await stat(spec.base.path).catch(() => undefined);
  if (!now) return 'other';
  const before = await stat(was).catch(() => undefined);
  if (before) return before.dev === now.dev && before.ino === now.ino ? 'same' : 'other';
  const recorded = await readJson<BaseRecord>(spec.baseRecord);
  if (recorded?.path !== was || recorded.size !== now.size) return 'other';
  // A cached image's digest was verified when it was pulled: no need to hash it again.
  if (spec.base.digest !== undefined || recorded.digest !== undefined)
    return spec.base.digest === recorded.digest ? 'same' : 'other';
  const current = await identifyFile(spec.base.path, spec.digestCache);
  return current.sha256 === recorded.sha256 ? 'same' : 'other';
}

/**
 * `disk.base.json`: the base's file identity, with its sha256 (a local file, hashed once per
 * version of it) or the digest a cached image was verified with when it was pulled.
 */
type BaseRecord = Omit<FileIdentity, 'sha256'> & { sha256?: string; digest?: string };

/**
 * Drift of the disk itself (missing, on another base, or on the same base moved); whether a
 * change of the file needs a new disk is the instance's to judge (instance.ts).
 */
export function drift(spec: OverlaySpec, observed: OverlayObserved): Change | undefined {
  const act = (verb: 'create' | 'recreate' | 'rebase', cause: Change['cause'], reason: string): Change => ({
    kind: 'overlay',
    name: spec.instance,
    instance: spec.instance,
    service: spec.service,
    verb,
    cause,
    reason,
    needs: [`image:${spec.base.name}`],
  });
  if (!observed.exists) return act('create', 'missing', 'no root disk');
  if (observed.backingFile !== spec.base.path && observed.base === 'same')
    return act(
      'rebase',
      'moved',
      `the base image moved from ${observed.backingFile} to ${spec.base.path}; same file`,
    );
  if (observed.backingFile !== spec.base.path)
    return act(
      'recreate',
      'drift',
      `the root disk is based on ${observed.backingFile ?? 'nothing'}, not ${spec.base.path}`,
    );
  if (observed.backingFormat !== undefined && observed.backingFormat !== spec.base.format)
    return act(
      'recreate',
      'drift',
      `the base image format is ${observed.backingFormat}, not ${spec.base.format}`,
    );
  return undefined;
}

/**
 * How the disk's size stands against `vm.disk_size`: it grows (a resize while the VM is down;
 * the guest's growpart takes it at boot), or it would shrink, which loses data and is refused.
 * Without a disk_size the disk keeps the size it has.
 */
export function sizeChange(spec: OverlaySpec, observed: OverlayObserved): 'grow' | 'shrink' | undefined {
  if (spec.size === undefined || observed.virtualSize === undefined || spec.size === observed.virtualSize)
    return undefined;
  return spec.size > observed.virtualSize ? 'grow' : 'shrink';
}

/** Grows the disk to its spec's size (qemu-img refuses to shrink without --shrink, which holos never passes). */
export async function resize(spec: OverlaySpec, qemuImg: string): Promise<void> {
  const { execa } = await import('execa');
  await execa(qemuImg, ['resize', '-q', spec.path, String(spec.size)]);
}

/** Makes a fresh overlay, replacing any old one: the instance's root disk starts over. */
export async function create(spec: OverlaySpec, qemuImg: string, stateDir: string): Promise<void> {
  await mkdir(dirname(spec.path), { recursive: true, mode: 0o700 });
  await rm(spec.path, { force: true });
  const size = spec.size === undefined ? [] : [String(spec.size)];
  const args = [
    'create',
    '-q',
    '-f',
    'qcow2',
    '-F',
    spec.base.format,
    '-b',
    spec.base.path,
    spec.path,
    ...size,
  ];
  const { execa } = await import('execa');
  await execa(qemuImg, args);
  await recordBase(spec, stateDir);
}

/** Points the disk at the base's new path; its data is untouched (`-u`: same base content). */
export async function rebase(spec: OverlaySpec, qemuImg: string, stateDir: string): Promise<void> {
  const { execa } = await import('execa');
  await execa(qemuImg, ['rebase', '-u', '-F', spec.base.format, '-b', spec.base.path, spec.path]);
  await recordBase(spec, stateDir);
}

async function recordBase(spec: OverlaySpec, stateDir: string): Promise<void> {
  // A cached image pulled in this very apply: its digest is in the cache's record by now.
  const { source } = spec.base;
  const digest =
    spec.base.digest ??
    (source &&
      (await readImageRecord(stateDir, source))?.versions.find((v) => v.file === basename(spec.base.path))
        ?.digest);
  let record: BaseRecord;
  if (digest === undefined) record = await identifyFile(spec.base.path, spec.digestCache);
  else {
    const { dev, ino, size, mtimeMs } = await stat(spec.base.path);
    record = { path: spec.base.path, dev, ino, size, mtimeMs, digest };
  }
  await writeAtomically(spec.baseRecord, `${JSON.stringify(record)}\n`);
}

/** The root disk of each instance, on its service's base image. */
export function overlaySpecs(input: DesiredInput): Map<string, OverlaySpec> {
  const { project, layout } = input;
  const services = new Map(project.services.map((s) => [s.name, s]));
  return new Map(
    project.instances.map((i) => {
      const service = services.get(i.service)!;
      const files = layout.instance(i.name);
      const spec: OverlaySpec = {
        instance: i.name,
        service: i.service,
        path: files.overlay,
        base: serviceImage(input, service),
        size: service.spec.vm.disk_size,
        baseRecord: files.diskBase,
        digestCache: layout.digestCache,
      };
      return [i.name, spec];
    }),
  );
}

export const overlay: Kind<'overlay', OverlaySpec, OverlayObserved> = {
  kind: 'overlay',
  part: true,
  desired: overlaySpecs,
  observe: (_name, spec) => (spec ? observeOverlay(spec) : Promise.resolve({ exists: false })),

  /**
   * The disk's own drift, for an instance that is to run; and a new disk for an instance made
   * again (its seed changed: cloud-init must run on a fresh disk).
   */
  diff(name, spec, observed, ctx) {
    if (!spec || ctx.targetOf(spec.service, name) !== 'running') return [];
    const own = drift(spec, observed);
    const verb = ctx.planned('instance', name)?.verb;
    if ((verb === 'recreate' || verb === 'create') && (own === undefined || own.verb === 'rebase'))
      return [
        {
          kind: 'overlay',
          name,
          instance: name,
          service: spec.service,
          verb: 'recreate',
          cause: 'replaced',
          reason: 'a new root disk, so cloud-init runs again',
          needs: [`image:${spec.base.name}`],
        },
      ];
    if (own) return [own];
    if (verb && startsVm.has(verb) && sizeChange(spec, observed) === 'grow')
      return [
        {
          kind: 'overlay',
          name,
          instance: name,
          service: spec.service,
          verb: 'resize',
          cause: 'changed',
          reason: `grows from ${formatSize(observed.virtualSize!)} to ${formatSize(spec.size!)}`,
        },
      ];
    return [];
  },

  execute: {
    create: ({ spec }, ctx) => create(spec!, ctx.qemu.img, ctx.layout.stateDir),
    recreate: ({ spec }, ctx) => create(spec!, ctx.qemu.img, ctx.layout.stateDir),
    rebase: ({ spec }, ctx) => rebase(spec!, ctx.qemu.img, ctx.layout.stateDir),
    resize: ({ spec }, ctx) => resize(spec!, ctx.qemu.img),
  },
};
