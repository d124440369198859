import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { readJson, writeAtomically } from './fs.js';

// The sha256 of a (large) file, kept in a small cache keyed by what changes when the file
// does: device, inode, size and modification time. A base image is hashed once per version of
// it, not once per instance or per run.

export interface FileIdentity {
  path: string;
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  sha256: string;
}

type Cache = Record<string, string>;

const keyOf = (info: { dev: number; ino: number; size: number; mtimeMs: number }) =>
  `${info.dev}:${info.ino}:${info.size}:${info.mtimeMs}`;

/** The hex digest of a file's bytes, streamed (base images are gigabytes). */
export async function hashFile(path: string, algo: 'sha256' | 'sha512'): Promise<string> {
  const hash = createHash(algo);
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/** Hashes in flight, so parallel instances on one base image hash it once. */
const inFlight = new Map<string, Promise<string>>();

/** The file's identity with its digest, from `cacheFile` when the file is unchanged since. */
export async function identifyFile(path: string, cacheFile: string): Promise<FileIdentity> {
  const info = await stat(path);
  const key = keyOf(info);
  let digest = inFlight.get(`${cacheFile}\0${key}`);
  if (!digest) {
    const id = `${cacheFile}\0${key}`;
    digest = cachedDigest(path, key, cacheFile);
    inFlight.set(id, digest);
    digest.catch(() => inFlight.delete(id));
  }
  const sha256 = await digest;
  return { path, dev: info.dev, ino: info.ino, size: info.size, mtimeMs: info.mtimeMs, sha256 };
}

async function cachedDigest(path: string, key: string, cacheFile: string): Promise<string> {
  const cache = (await readJson<Cache>(cacheFile)) ?? {};
  let sha256 = cache[key];
  if (!sha256) {
    sha256 = await hashFile(path, 'sha256');
    await mkdir(dirname(cacheFile), { recursive: true, mode: 0o700 });
    // Read again just before writing: another holos may have added its own entry meanwhile.
    const fresh = (await readJson<Cache>(cacheFile)) ?? {};
    await writeAtomically(cacheFile, `${JSON.stringify({ ...fresh, [key]: sha256 })}\n`);
  }
  return sha256;
}

/** Drops the entry of a file about to be deleted, so the cache does not grow with every version. */
export async function forgetDigest(path: string, cacheFile: string): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  const cache = info && (await readJson<Cache>(cacheFile));
  if (!info || !cache?.[keyOf(info)]) return;
  const { [keyOf(info)]: _gone, ...rest } = cache;
  await writeAtomically(cacheFile, `${JSON.stringify(rest)}\n`);
}
