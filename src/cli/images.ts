import { rm } from 'node:fs/promises';
import { basename } from 'node:path';
import { loadCompose } from '../compose/load.js';
import { resolveProject } from '../compose/resolve.js';
import { formatBytes } from '../compose/units.js';
import { UserError } from '../errors.js';
import { catalog, isLocalImage } from '../images/catalog.js';
import { readImageLock, writeImageLock, type LockEntry } from '../images/lockfile.js';
import { parseDigest } from '../images/pull.js';
import { sourceOf, sourcesOf, type ImageSource } from '../images/source.js';
import {
  digestCacheFile,
  imageLockDir,
  listImageRecords,
  readImageRecord,
  recordFile,
  versionPath,
  writeImageRecord,
  type ImageRecord,
  type ImageVersion,
} from '../images/store.js';
import { planSession } from '../reconcile/converge.js';
import { targetsFor } from '../reconcile/targets.js';
import { pullWithEvents } from '../resources/image.js';
import { openProject } from '../session.js';
import { imageUsers } from '../state/inspect.js';
import { acquireLock } from '../state/lock.js';
import { forgetDigest, hashFile } from '../util/digest.js';
import { stateDirOf, type GlobalOptions } from './context.js';
import { eventPrinter, formatEvent, shortDigest, table } from './output.js';

// `holos pull` and `holos images`: the image cache (images/store.ts) for people.

function sourceNamed(ref: string): ImageSource {
  const source = sourceOf(ref);
  if (typeof source === 'string') throw new UserError(source);
  return source;
}

/** The catalog and URL images the compose file's services use, with the lock file's pins. */
function composeImages(globals: GlobalOptions) {
  const loaded = loadCompose({ cwd: process.cwd(), files: globals.file, projectName: globals.projectName });
  return { dir: loaded.dir, sources: sourcesOf(resolveProject(loaded).services) };
}

/**
 * `holos pull [image…]`: asks upstream for each image (its published checksum) and downloads a
 * version it does not have; no argument pulls the compose file's images (with the lock file's
 * digests when there is one). Projects keep the version their disks are on (`up --pull always`).
 */
export async function pull(globals: GlobalOptions, refs: string[], options: { json?: boolean }) {
  const stateDir = stateDirOf(globals);
  const emit = eventPrinter(options.json ?? false);
  let sources: ImageSource[];
  let lock: Record<string, LockEntry> = {};
  if (refs.length > 0) {
    const local = refs.filter(isLocalImage);
    for (const ref of local) console.log(`${ref}: a local file; nothing to pull`);
    sources = refs.filter((r) => !isLocalImage(r)).map(sourceNamed);
  } else {
    const found = composeImages(globals);
    sources = found.sources;
    lock = (await readImageLock(found.dir))?.images ?? {};
    if (sources.length === 0) console.log('no catalog or URL images in the file; nothing to pull');
  }
  for (const source of sources) {
    const entry = lock[source.name];
    const pulled = await pullWithEvents(
      entry ? { ...source, url: entry.url } : source,
      { stateDir, policy: 'always', ...(entry && { expected: entry.digest }) },
      emit,
    );
    const { version } = pulled;
    const event = {
      type: 'pulled',
      image: source.name,
      path: pulled.path,
      downloaded: pulled.downloaded,
      ...(version.digest && { digest: version.digest }),
      size: version.size,
    } as const;
    // The result is the verb's output (stdout); progress went to stderr.
    if (options.json) emit(event);
    else console.log(formatEvent(event));
  }
}

/** A row of `holos images --format json`'s `cached`: one file of the cache. */
export interface CachedRow {
  name: string;
  file: string;
  current: boolean;
  size: number;
  digest?: string;
  url: string;
  pulled_at: string;
  used_by: string[];
}

async function cachedRows(stateDir: string): Promise<CachedRow[]> {
  const users = await imageUsers(stateDir);
  const rows: CachedRow[] = [];
  for (const record of await listImageRecords(stateDir))
    for (const v of record.versions)
      rows.push({
        name: record.name,
        file: v.file,
        current: v.file === record.current,
        size: v.size,
        ...(v.digest && { digest: v.digest }),
        url: v.url,
        pulled_at: v.pulled_at,
        used_by: users.get(versionPath(stateDir, v.file)) ?? [],
      });
  return rows.sort((a, b) => a.name.localeCompare(b.name) || a.pulled_at.localeCompare(b.pulled_at));
}

/** `holos images`: the catalog, and what the cache holds (which instances use each file). */
export async function list(globals: GlobalOptions, options: { format: string }) {
  if (options.format !== 'table' && options.format !== 'json')
    throw new UserError(`--format ${options.format}: use table or json`);
  const cached = await cachedRows(stateDirOf(globals));
  if (options.format === 'json') {
    console.log(JSON.stringify({ schema_version: 1, catalog, cached }));
    return;
  }
  console.log(
    table([
      ['NAME', 'TAGS', 'USER', 'OS', 'MIN MEMORY'],
      ...catalog.map((e) => [
        `${e.name}${e.isDefault ? ' *' : ''}`,
        e.tags.join(', '),
        e.user,
        e.os,
        `${e.minMemoryMb} MiB`,
      ]),
    ]),
  );
  console.log('\n(* the default tag of its name)\n');
  if (cached.length === 0) return console.log('nothing cached');
  console.log(
    table([
      ['CACHED', 'FILE', 'SIZE', 'DIGEST', 'PULLED', 'USED BY'],
      ...cached.map((r) => [
        `${r.name}${r.current ? '' : ' (older)'}`,
        r.file,
        formatBytes(r.size),
        shortDigest(r.digest),
        r.pulled_at.slice(0, 10),
        r.used_by.join(', ') || '-',
      ]),
    ]),
  );
}

/** The records and versions `ref` names: an image (every version) or one version's file name. */
async function select(
  stateDir: string,
  refs: string[],
): Promise<{ record: ImageRecord; versions: ImageVersion[] }[]> {
  const records = await listImageRecords(stateDir);
  return Promise.all(
    refs.map(async (ref) => {
      const byFile = records.find((r) => r.versions.some((v) => v.file === ref));
      if (byFile) return { record: byFile, versions: byFile.versions.filter((v) => v.file === ref) };
      const record = await readImageRecord(stateDir, sourceNamed(ref));
      if (!record) throw new UserError(`${ref} is not in the cache (holos images lists what is)`);
      return { record, versions: record.versions };
    }),
  );
}

/** Removes versions of an image under its lock; the record keeps the rest. */
async function removeVersions(stateDir: string, record: ImageRecord, versions: ImageVersion[]) {
  const lock = await acquireLock(imageLockDir(stateDir, record.key), record.name);
  try {
    for (const v of versions) {
      await forgetDigest(versionPath(stateDir, v.file), digestCacheFile(stateDir));
      await rm(versionPath(stateDir, v.file), { force: true });
    }
    const gone = new Set(versions.map((v) => v.file));
    const left = record.versions.filter((v) => !gone.has(v.file));
    if (left.length === 0) await rm(recordFile(stateDir, record.key), { force: true });
    else
      await writeImageRecord(stateDir, {
        ...record,
        versions: left,
        current: gone.has(record.current) ? left.at(-1)!.file : record.current,
      });
  } finally {
    await lock.release();
  }
}

/** `holos images rm`: refused while a disk is made on it, naming the instances. */
export async function remove(globals: GlobalOptions, refs: string[]) {
  const stateDir = stateDirOf(globals);
  const users = await imageUsers(stateDir);
  const chosen = await select(stateDir, refs);
  const inUse = chosen.flatMap(({ record, versions }) =>
    versions.flatMap((v) => {
      const by = users.get(versionPath(stateDir, v.file)) ?? [];
      return by.length > 0 ? [`${record.name} (${v.file}) is the base of ${by.join(', ')}`] : [];
    }),
  );
  if (inUse.length > 0)
    throw new UserError(`${inUse.join('; ')}: remove those instances first (holos down), then try again`);
  for (const { record, versions } of chosen) {
    await removeVersions(stateDir, record, versions);
    for (const v of versions) console.log(`removed ${record.name} ${v.file} (${formatBytes(v.size)})`);
  }
}

/** `holos images prune`: every cached version no disk in the state dir is made on. */
export async function prune(globals: GlobalOptions, options: { dryRun?: boolean }) {
  const stateDir = stateDirOf(globals);
  const users = await imageUsers(stateDir);
  let freed = 0;
  for (const record of await listImageRecords(stateDir)) {
    const unused = record.versions.filter((v) => !users.has(versionPath(stateDir, v.file)));
    if (unused.length === 0) continue;
    if (!options.dryRun) await removeVersions(stateDir, record, unused);
    for (const v of unused) {
      freed += v.size;
      console.log(
        `${options.dryRun ? 'would remove' : 'removed'} ${record.name} ${v.file} (${formatBytes(v.size)})`,
      );
    }
  }
  console.log(`${options.dryRun ? 'would free' : 'freed'} ${formatBytes(freed)}`);
}

const digestOf = async (path: string, algo: 'sha256' | 'sha512') => `${algo}:${await hashFile(path, algo)}`;

/** `holos images verify [image…]`: hashes cached files again against the digests they were pulled with. */
export async function verify(globals: GlobalOptions, refs: string[]) {
  const stateDir = stateDirOf(globals);
  const chosen =
    refs.length > 0
      ? await select(stateDir, refs)
      : (await listImageRecords(stateDir)).map((record) => ({ record, versions: record.versions }));
  const bad: string[] = [];
  for (const { record, versions } of chosen)
    for (const v of versions) {
      if (!v.digest) {
        console.log(`${record.name} ${v.file}: no recorded digest (placed by hand); nothing to check`);
        continue;
      }
      const got = await digestOf(versionPath(stateDir, v.file), parseDigest(v.digest).algo);
      if (got === v.digest) console.log(`${record.name} ${v.file}: ok (${shortDigest(v.digest)})`);
      else {
        console.log(`${record.name} ${v.file}: MISMATCH: expected ${v.digest}, got ${got}`);
        bad.push(v.file);
      }
    }
  if (bad.length > 0)
    throw new UserError(
      `${bad.join(', ')} changed since they were pulled; remove them (holos images rm) and pull again`,
    );
}

/**
 * `holos images lock`: writes holos.images.lock beside the compose file, pinning each image at
 * the version the project uses now (pulled first when it is not cached).
 */
export async function lock(globals: GlobalOptions, options: { json?: boolean }) {
  const stateDir = stateDirOf(globals);
  const session = await openProject(stateDir, {
    cwd: process.cwd(),
    files: globals.file,
    projectName: globals.projectName,
  });
  const services = session.project.services.map((s) => s.name);
  const { desired } = await planSession(session, targetsFor('plan', services));
  const emit = eventPrinter(options.json ?? false);
  const entries: Record<string, LockEntry> = {};
  for (const spec of desired.specs.image.values()) {
    if (!spec.source) continue;
    const file = basename(spec.path);
    const pulled = await pullWithEvents(
      spec.source,
      { stateDir, policy: 'missing', file, ...(spec.pull?.expected && { expected: spec.pull.expected }) },
      emit,
    );
    const digest = pulled.version.digest ?? (await digestOf(pulled.path, 'sha256'));
    entries[spec.name] = { url: spec.source.url, digest, size: pulled.version.size };
  }
  if (Object.keys(entries).length === 0) {
    console.log('no catalog or URL images in the file; nothing to lock');
    return;
  }
  const written = await writeImageLock(session.project.dir, entries);
  for (const [name, entry] of Object.entries(entries))
    console.log(`${name}: ${shortDigest(entry.digest)} ${entry.url}`);
  console.log(`wrote ${written}`);
}
