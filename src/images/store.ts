import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readJson, writeAtomically } from '../util/fs.js';
import type { ImageSource } from './source.js';

// The image cache, `<state>/images`. Per image (by its source's key) a record `<key>.json`
// lists the versions pulled, each a read-only file with the digest it was verified with and
// where it came from; `current` is the newest. A version's file never changes once written: an
// overlay's backing file must not move under it, so a newer upstream build is a new version
// (`<key>@2.qcow2`), and projects keep the version their disks were made on (the project
// record pins it) until `up --pull always`. The digest recorded here is what `up` trusts: a
// cached image is never hashed again, except by `holos images verify`.

export interface ImageVersion {
  /** The file's name in the images directory. */
  file: string;
  url: string;
  /** `<algo>:<hex>`, as verified when it was pulled; undefined for a file placed by hand. */
  digest?: string;
  size: number;
  pulled_at: string;
  /** The server's validators, to tell later whether a URL without a checksum has changed. */
  etag?: string;
  last_modified?: string;
}

export interface ImageRecord {
  schema_version: 1;
  name: string;
  key: string;
  current: string;
  versions: ImageVersion[];
}

export const imagesDir = (stateDir: string) => join(stateDir, 'images');
/** The digests of base files keyed by what changes with them (util/digest.ts). */
export const digestCacheFile = (stateDir: string) => join(imagesDir(stateDir), 'digests.json');
export const recordFile = (stateDir: string, key: string) => join(imagesDir(stateDir), `${key}.json`);
export const imageLockDir = (stateDir: string, key: string) => join(imagesDir(stateDir), `${key}.lock`);
export const versionPath = (stateDir: string, file: string) => join(imagesDir(stateDir), file);

/** The file of version `n` of an image: the first keeps the plain name (`debian-12.qcow2`). */
export const versionFile = (key: string, format: string, n: number) =>
  n <= 1 ? `${key}.${format}` : `${key}@${n}.${format}`;

/** The name the next version of an image gets. */
export function nextVersionFile(source: ImageSource, record: ImageRecord | undefined): string {
  const taken = new Set(record?.versions.map((v) => v.file));
  let n = (record?.versions.length ?? 0) + 1;
  while (taken.has(versionFile(source.key, source.format, n))) n++;
  return versionFile(source.key, source.format, n);
}

/**
 * The image's record, with only the versions whose files are there. A file that a holos before
 * 0.2 asked the user to place by hand (`debian-12.qcow2`, no record) is adopted as version 1,
 * with no digest: it was never verified, and it is what existing disks are made on.
 */
export async function readImageRecord(
  stateDir: string,
  source: ImageSource,
): Promise<ImageRecord | undefined> {
  const record = await readJson<ImageRecord>(recordFile(stateDir, source.key));
  if (record) {
    const present = await Promise.all(
      record.versions.map((v) =>
        stat(versionPath(stateDir, v.file)).then(
          () => true,
          () => false,
        ),
      ),
    );
    const versions = record.versions.filter((_, i) => present[i]);
    if (versions.length === 0) return undefined;
    const current = versions.some((v) => v.file === record.current) ? record.current : versions.at(-1)!.file;
    return { ...record, versions, current };
  }
  const file = versionFile(source.key, source.format, 1);
  const found = await stat(versionPath(stateDir, file)).catch(() => undefined);
  if (!found?.isFile()) return undefined;
  return {
    schema_version: 1,
    name: source.name,
    key: source.key,
    current: file,
    versions: [{ file, url: '', size: found.size, pulled_at: found.mtime.toISOString() }],
  };
}

export async function writeImageRecord(stateDir: string, record: ImageRecord): Promise<void> {
  await writeAtomically(recordFile(stateDir, record.key), `${JSON.stringify(record, null, 2)}\n`);
}

/** Every image record in the cache (for `holos images`, `rm`, `prune`). */
export async function listImageRecords(stateDir: string): Promise<ImageRecord[]> {
  const names = (await readdir(imagesDir(stateDir)).catch(() => [])).filter(
    (n) => n.endsWith('.json') && join(imagesDir(stateDir), n) !== digestCacheFile(stateDir),
  );
  const records = await Promise.all(names.map((n) => readJson<ImageRecord>(join(imagesDir(stateDir), n))));
  return records.filter((r): r is ImageRecord => r?.schema_version === 1 && Array.isArray(r.versions));
}

/** What a project's plan needs to know of an image: which version to use, and whether to pull. */
export interface Choice {
  /** The version's file name in the images directory. */
  file: string;
  /** True when that file is still to be downloaded. */
  pull: boolean;
  /** The digest it must have (the lock file's), when one is pinned. */
  expected?: string;
  /** A version newer than the one chosen is in the cache (`holos pull` fetched it). */
  newer?: ImageVersion;
}

/** What upstream serves now (`--pull always` asks before planning). */
export interface Upstream {
  /** The published digest (`<algo>:<hex>`); undefined for a URL without a checksum. */
  digest?: string;
  /** For a URL without a checksum: the server's validators match the newest cached version. */
  unchanged?: boolean;
}

export interface ChoiceInput {
  source: ImageSource;
  record: ImageRecord | undefined;
  /** The version the project's disks were made on (project record). */
  pinned?: string;
  /** The lock file's digest for this image. */
  locked?: string;
  /** `--pull always`: what upstream serves now; the project moves to it. */
  upstream?: Upstream;
}

/** Which version of an image a project uses. Pure. */
export function chooseVersion({ source, record, pinned, locked, upstream }: ChoiceInput): Choice {
  const versions = record?.versions ?? [];
  const current = versions.find((v) => v.file === record?.current);
  const wanted = locked ?? upstream?.digest;
  if (wanted !== undefined) {
    const match = versions.find((v) => v.digest === wanted);
    return match
      ? { file: match.file, pull: false, expected: wanted }
      : { file: nextVersionFile(source, record), pull: true, expected: wanted };
  }
  if (upstream)
    return current && upstream.unchanged
      ? { file: current.file, pull: false }
      : { file: nextVersionFile(source, record), pull: true };
  const chosen = versions.find((v) => v.file === pinned) ?? current;
  if (!chosen) return { file: nextVersionFile(source, record), pull: true };
  return { file: chosen.file, pull: false, ...(current && current !== chosen && { newer: current }) };
}
