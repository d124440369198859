import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { STATUS_CODES } from 'node:http';
import { dirname } from 'node:path';
import { EnvHttpProxyAgent, interceptors, request, type Dispatcher } from 'undici';
import packageJson from '../../package.json' with { type: 'json' };
import { UserError } from '../errors.js';
import { readJson, writeAtomically } from '../util/fs.js';
import type { Algo } from './catalog.js';

// The one HTTP client of holos: base images and their checksum lists. A base image is big and
// its mirror may be slow or cut, so a download resumes where it stopped, but only from a partial
// file whose validator (ETag or Last-Modified) the server confirms through If-Range: a partial
// file is never spliced with a changed upstream, and the digest is checked over the whole file.
// Two downloads of one dest at once are not guarded here: pull holds the image's lock around it.

export type { Algo } from './catalog.js';
export interface Digest {
  algo: Algo;
  hex: string; // lowercase
}
export const formatDigest = (d: Digest) => `${d.algo}:${d.hex}`;

export interface DownloadProgress {
  url: string;
  received: number; // bytes in the file so far, resumed ones included
  total?: number;
  resumedFrom: number;
  done: boolean;
}
export interface DownloadOptions {
  url: string;
  dest: string; // the final file; the partial download is `${dest}.part` (+ `${dest}.part.json`)
  expected?: Digest; // verify against this; when absent the sha256 is computed
  onProgress?: (p: DownloadProgress) => void; // at most every 200 ms, plus once with done: true
  signal?: AbortSignal;
  idleTimeoutMs?: number; // default 60_000: no body byte for this long = error
  headersTimeoutMs?: number; // default 30_000
}
export interface Downloaded {
  size: number;
  digest: Digest; // in expected.algo, or sha256
  etag?: string;
  lastModified?: string;
}
/** What `${dest}.part.json` records when a download starts: what a resume must match. */
interface PartRecord {
  url: string;
  etag?: string;
  lastModified?: string;
  total?: number;
}

const IDLE_MS = 60_000;
const HEADERS_MS = 30_000;
const TEXT_CAP = 1024 * 1024;

// One agent per process, made on first use: it reads HTTP(S)_PROXY and NO_PROXY (either case)
// then. Its timeouts are defaults; each request passes its own.
let agent: { dispatcher: Dispatcher; userAgent: string } | undefined;
const client = () =>
  (agent ??= {
    dispatcher: new EnvHttpProxyAgent({ headersTimeout: HEADERS_MS, bodyTimeout: IDLE_MS }).compose(
      interceptors.redirect({ maxRedirections: 5 }),
    ),
    userAgent: `holos/${packageJson.version}`,
  });

interface Call {
  signal?: AbortSignal;
  headersTimeout: number;
  bodyTimeout: number;
  headers?: Record<string, string>;
}
type Response = Dispatcher.ResponseData;

async function send(method: 'GET' | 'HEAD', url: string, call: Call): Promise<Response> {
  const { signal, headersTimeout, bodyTimeout, headers } = call;
  const { dispatcher, userAgent } = client();
  try {
    return await request(url, {
      method,
      dispatcher,
      headers: { 'user-agent': userAgent, ...headers },
      signal,
      headersTimeout,
      bodyTimeout,
    });
  } catch (error) {
    throw failure(`${method} ${url}`, error, call);
  }
}

const NETWORK = new Set(['ECONNRESET', 'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EPIPE']);
const NETWORK_LOST = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);
const seconds = (ms: number) => `${ms / 1000} s`;

/**
 * A network failure as one line naming the request; `at` (a download's byte count) says how far
 * it got and that a pull again resumes. An abort is passed on as the signal's reason, and a
 * failure that is not the network's (a full disk) as it is.
 */
function failure(
  what: string,
  error: unknown,
  call: Call,
  at?: { received: number; total?: number },
): unknown {
  if (call.signal?.aborted) return call.signal.reason;
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string' || !(code.startsWith('UND_ERR_') || NETWORK.has(code))) return error;
  const after = at ? ` (after ${at.received}${at.total === undefined ? '' : ` of ${at.total}`} bytes)` : '';
  const resume = at ? '; run the pull again to resume' : '';
  if (code === 'UND_ERR_HEADERS_TIMEOUT')
    return new UserError(`${what}: no response for ${seconds(call.headersTimeout)}`);
  if (code === 'UND_ERR_BODY_TIMEOUT')
    return new UserError(`${what}: no data for ${seconds(call.bodyTimeout)}${after}${resume}`);
  if (NETWORK_LOST.has(code)) return new UserError(`${what}: connection lost${after}${resume}`);
  return new UserError(`${what}: ${(error as Error).message}`);
}

const httpError = (what: string, status: number) =>
  new UserError(`${what}: HTTP ${status} ${STATUS_CODES[status] ?? ''}`.trimEnd());
function header(response: Response, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
function numberHeader(response: Response, name: string): number | undefined {
  const value = Number(header(response, name) ?? NaN);
  return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

/** The partial download to continue: one with bytes whose record names this URL and a validator. */
async function resumable(url: string, part: string, record: string) {
  const size = await stat(part).then(
    (s) => s.size,
    () => 0,
  );
  const meta = await readJson<PartRecord>(record);
  // If-Range needs a strong validator: a weak ETag never matches, so fall back to the date.
  const validator = meta?.etag && !meta.etag.startsWith('W/') ? meta.etag : meta?.lastModified;
  return size > 0 && meta?.url === url && validator ? { size, validator } : undefined;
}

/** Download `url` to `dest`, resuming a partial download when the server confirms it is the same file. */
export async function download(options: DownloadOptions): Promise<Downloaded> {
  const { url, dest, expected, onProgress, signal } = options;
  const call: Call = {
    signal,
    headersTimeout: options.headersTimeoutMs ?? HEADERS_MS,
    bodyTimeout: options.idleTimeoutMs ?? IDLE_MS,
  };
  const what = `GET ${url}`;
  const part = `${dest}.part`;
  const record = `${dest}.part.json`;
  await mkdir(dirname(dest), { recursive: true, mode: 0o700 });

  let from = await resumable(url, part, record);
  const get = () =>
    send(
      'GET',
      url,
      from ? { ...call, headers: { range: `bytes=${from.size}-`, 'if-range': from.validator } } : call,
    );
  let response = await get();
  if (from && response.statusCode !== 200) {
    // 206 from elsewhere than our end, or 416 (the part is whole already): ask for all of it.
    const start = /^bytes (\d+)-/.exec(header(response, 'content-range') ?? '')?.[1];
    if (response.statusCode === 416 || (response.statusCode === 206 && Number(start) !== from.size)) {
      await response.body.dump();
      from = undefined;
      response = await get();
    }
  }
  if (response.statusCode === 200) from = undefined; // the file changed, or no range support: start over
  if (response.statusCode !== (from ? 206 : 200)) {
    await response.body.dump();
    throw httpError(what, response.statusCode);
  }

  const resumedFrom = from?.size ?? 0;
  const whole = /\/(\d+)$/.exec(header(response, 'content-range') ?? '')?.[1]; // bytes n-m/total, or /*
  const total = from ? (whole ? Number(whole) : undefined) : numberHeader(response, 'content-length');
  const etag = header(response, 'etag');
  const lastModified = header(response, 'last-modified');
  // One hash, in the algorithm the digest is published in: hashing is the costliest part of a
  // download (sha512 alone runs at about the speed of a local curl), so nothing else is hashed.
  const algo = expected?.algo ?? 'sha256';
  const hash: Hash = createHash(algo);
  const update = (chunk: Buffer) => hash.update(chunk);

  let received = resumedFrom;
  let reported = 0;
  const report = (done: boolean) => onProgress?.({ url, received, total, resumedFrom, done });
  try {
    if (from)
      for await (const chunk of createReadStream(part, { end: from.size - 1 })) update(chunk as Buffer);
    else
      await writeAtomically(record, JSON.stringify({ url, etag, lastModified, total } satisfies PartRecord));
    const file = await open(part, from ? 'a' : 'w', 0o600);
    try {
      await file.chmod(0o600); // a part left by an older run keeps its mode otherwise
      for await (const chunk of response.body) {
        const bytes = chunk as Buffer;
        // The disk writes while the CPU hashes; awaited before the next chunk, so the socket
        // waits for the disk and nothing piles up in memory.
        const written = file.write(bytes);
        update(bytes);
        await written;
        received += bytes.length;
        if (Date.now() - reported >= 200) {
          reported = Date.now();
          report(false);
        }
      }
      await file.sync();
    } finally {
      await file.close();
    }
  } catch (error) {
    throw failure(what, error, call, { received, total });
  } finally {
    response.body.destroy(); // a no-op once read; frees the socket when we stopped early
  }
  if (total !== undefined && received !== total)
    throw new UserError(`${what}: ended after ${received} of ${total} bytes; run the pull again to resume`);

  const hex = hash.digest('hex');
  if (expected && expected.hex.toLowerCase() !== hex) {
    // Bad bytes are not worth resuming from: drop them so the next pull starts clean.
    await rm(part, { force: true });
    await rm(record, { force: true });
    throw new UserError(`${url}: ${algo} mismatch: expected ${expected.hex}, got ${hex}; nothing was cached`);
  }
  // Read-only: overlays are backed by this file, and a base image that changes corrupts them all.
  await chmod(part, 0o444);
  await rename(part, dest);
  await rm(record, { force: true });
  report(true);
  return { size: received, digest: { algo, hex }, etag, lastModified };
}

/** For fetchText and head: `timeoutMs` bounds both the wait for headers and for each body byte. */
export interface SmallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}
const smallCall = ({ signal, timeoutMs }: SmallOptions): Call => ({
  signal,
  headersTimeout: timeoutMs ?? HEADERS_MS,
  bodyTimeout: timeoutMs ?? IDLE_MS,
});

/** A small text file (checksum list): GET, must be 200, capped at 1 MiB, same timeouts and proxy. */
export async function fetchText(url: string, options: SmallOptions = {}): Promise<string> {
  const what = `GET ${url}`;
  const call = smallCall(options);
  const response = await send('GET', url, call);
  if (response.statusCode !== 200) {
    await response.body.dump();
    throw httpError(what, response.statusCode);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    // Counted as it comes rather than trusting Content-Length: the server may send none, or lie.
    for await (const chunk of response.body) {
      size += (chunk as Buffer).length;
      if (size > TEXT_CAP) throw new UserError(`${what}: larger than 1 MiB, which no checksum list is`);
      chunks.push(chunk as Buffer);
    }
  } catch (error) {
    throw failure(what, error, call);
  } finally {
    response.body.destroy();
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** HEAD: size/etag/last-modified if the server says them; undefined fields when not. Never throws for a non-2xx: returns { status }. */
export async function head(
  url: string,
  options: SmallOptions = {},
): Promise<{ status: number; size?: number; etag?: string; lastModified?: string }> {
  const response = await send('HEAD', url, smallCall(options));
  await response.body.dump();
  const status = response.statusCode;
  if (status < 200 || status > 299) return { status };
  return {
    status,
    size: numberHeader(response, 'content-length'),
    etag: header(response, 'etag'),
    lastModified: header(response, 'last-modified'),
  };
}
