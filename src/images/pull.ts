import { mkdir, rm } from 'node:fs/promises';
import { basename } from 'node:path';
import { UserError } from '../errors.js';
import { acquireLock } from '../state/lock.js';
import { findDigest } from './checksums.js';
import {
  download,
  fetchText,
  formatDigest,
  head,
  type Algo,
  type Digest,
  type DownloadProgress,
} from './download.js';
import { mirrored, type ImageSource } from './source.js';
import {
  imageLockDir,
  imagesDir,
  nextVersionFile,
  readImageRecord,
  versionPath,
  writeImageRecord,
  type ImageRecord,
  type ImageVersion,
} from './store.js';

// Pulling one image into the cache (store.ts). One holos at a time per image: a second one
// waits on the image's lock and then finds the version the first one pulled, so two `up`s or
// two `holos pull`s of one image download it once.

export type PullPolicy = 'missing' | 'always' | 'never';

export interface PullOptions {
  stateDir: string;
  source: ImageSource;
  /** `missing`: a cached version will do. `always`: ask upstream, and pull a version it changed. */
  policy: 'missing' | 'always';
  /** The lock file's digest: the version must have it. */
  expected?: string;
  /** The file name a download gets (the one the plan chose), else the next version's. */
  file?: string;
  onProgress?: (progress: DownloadProgress) => void;
  /** Another holos holds the image's lock. */
  onWait?: (message: string) => void;
  warn: (message: string) => void;
  signal?: AbortSignal;
}

export interface Pulled {
  record: ImageRecord;
  version: ImageVersion;
  path: string;
  downloaded: boolean;
}

export const parseDigest = (text: string): Digest => {
  const [algo, hex] = text.split(':') as [Algo, string];
  return { algo, hex };
};

export async function pullImage(options: PullOptions): Promise<Pulled> {
  const { stateDir, source } = options;
  await mkdir(imagesDir(stateDir), { recursive: true, mode: 0o700 });
  const lock = await acquireLock(imageLockDir(stateDir, source.key), source.name, {
    onWait: (pid) => options.onWait?.(`waiting for the holos (pid ${pid}) that is pulling ${source.name}`),
  });
  try {
    return await pullLocked(options);
  } finally {
    await lock.release();
  }
}

async function pullLocked(options: PullOptions): Promise<Pulled> {
  const { stateDir, source } = options;
  const record = await readImageRecord(stateDir, source);
  const current = record?.versions.find((v) => v.file === record.current);
  const found = (version: ImageVersion | undefined, makeCurrent = false): Promise<Pulled> | undefined =>
    version && settle(stateDir, record!, version, false, makeCurrent);

  if (options.policy === 'missing') {
    const cached = options.expected
      ? record?.versions.find((v) => v.digest === options.expected)
      : (record?.versions.find((v) => v.file === options.file) ?? current);
    const done = found(cached);
    if (done) return done;
  }

  const expected = options.expected ? parseDigest(options.expected) : await publishedDigest(source);
  if (expected) {
    const done = found(
      record?.versions.find((v) => v.digest === formatDigest(expected)),
      true,
    );
    if (done) return done;
  } else {
    options.warn(
      `${source.url} has no published checksum: only TLS vouches for it; pin its digest with holos images lock`,
    );
    if (current && (await unchangedUpstream(source, current))) return found(current)!;
  }

  const file = options.file ?? nextVersionFile(source, record);
  const path = versionPath(stateDir, file);
  const got = await download({
    url: mirrored(source.url),
    dest: path,
    ...(expected && { expected }),
    ...(options.onProgress && { onProgress: options.onProgress }),
    ...(options.signal && { signal: options.signal }),
  });
  const digest = formatDigest(got.digest);
  // Upstream served bytes already cached (a URL without a checksum, downloaded to compare): the
  // copy goes, unless a plan named this file for disks to be made on.
  const same = record?.versions.find((v) => v.digest === digest && v.file !== file);
  if (same && options.file === undefined) {
    await rm(path, { force: true });
    return settle(stateDir, record!, same, false, true);
  }
  const version: ImageVersion = {
    file,
    url: source.url,
    digest,
    size: got.size,
    pulled_at: new Date().toISOString(),
    ...(got.etag && { etag: got.etag }),
    ...(got.lastModified && { last_modified: got.lastModified }),
  };
  const next: ImageRecord = record
    ? { ...record, versions: [...record.versions.filter((v) => v.file !== file), version] }
    : { schema_version: 1, name: source.name, key: source.key, current: file, versions: [version] };
  return settle(stateDir, next, version, true, true);
}

async function settle(
  stateDir: string,
  record: ImageRecord,
  version: ImageVersion,
  downloaded: boolean,
  makeCurrent: boolean,
): Promise<Pulled> {
  const next = makeCurrent ? { ...record, current: version.file } : record;
  // A file placed by hand has no record yet (store.ts adopts it, with no URL): it gets one.
  const adopted = record.versions.some((v) => v.url === '');
  if (downloaded || next.current !== record.current || adopted) await writeImageRecord(stateDir, next);
  return { record: next, version, path: versionPath(stateDir, version.file), downloaded };
}

/** The digest the distribution publishes for the image now, from its checksum file. */
export async function publishedDigest(source: ImageSource): Promise<Digest | undefined> {
  if (!source.checksum) return undefined;
  const url = mirrored(source.checksum.url);
  const text = await fetchText(url);
  const file = basename(new URL(source.url).pathname);
  const hex = findDigest(text, file, source.checksum.algo);
  if (!hex)
    throw new UserError(
      `${url} has no ${source.checksum.algo} digest for ${file}; the distribution changed its layout, or the mirror is incomplete`,
    );
  return { algo: source.checksum.algo, hex };
}

/** For a URL without a checksum: the server says the file is the one cached (same validators). */
export async function unchangedUpstream(source: ImageSource, cached: ImageVersion): Promise<boolean> {
  if (!cached.etag && !cached.last_modified) return false;
  const now = await head(mirrored(source.url)).catch(() => undefined);
  if (!now || now.status >= 300) return false;
  return (
    (cached.etag !== undefined && now.etag === cached.etag) ||
    (cached.etag === undefined && now.lastModified === cached.last_modified && now.size === cached.size)
  );
}
