import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { UserError } from '../src/errors.js';
import { download, fetchText, head, type DownloadProgress } from '../src/images/download.js';
import { startImageServer, type ImageServer } from './support/image-server.js';

// The agent reads the proxy variables once, on first use: a proxy set on the test host must not
// see requests to the local server.
process.env.NO_PROXY = process.env.no_proxy = ['127.0.0.1', process.env.NO_PROXY].filter(Boolean).join(',');

const MiB = 1024 * 1024;
const body = randomBytes(3 * MiB);
const other = randomBytes(3 * MiB);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sha512 = (b: Buffer) => createHash('sha512').update(b).digest('hex');

let server: ImageServer;
let dir: string;
let count = 0;
/** A destination in a directory that does not exist yet, and the image path the server serves it at. */
function fresh(source: Buffer = body) {
  const n = ++count;
  const path = `/img${n}.qcow2`;
  server.serve(path, { body: source });
  const dest = join(dir, `d${n}`, 'cache', 'image.qcow2');
  return { path, url: `${server.url}${path}`, dest, part: `${dest}.part`, record: `${dest}.part.json` };
}
const lastGet = (path: string) => server.requests.filter((r) => r.method === 'GET' && r.path === path).at(-1);
const mode = (path: string) => statSync(path).mode & 0o777;

before(async () => {
  server = await startImageServer();
  dir = mkdtempSync(join(tmpdir(), 'holos-download-'));
});
after(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a fresh download reports progress up to the total and returns its sha256', async () => {
  const { url, dest, part, record } = fresh();
  const progress: DownloadProgress[] = [];
  const got = await download({ url, dest, onProgress: (p) => progress.push(p) });

  assert.equal(got.size, body.length);
  assert.deepEqual(got.digest, { algo: 'sha256', hex: sha256(body) });
  assert.match(got.etag ?? '', /^".+"$/);
  assert.ok(got.lastModified);
  assert.ok(readFileSync(dest).equals(body));
  assert.equal(existsSync(part), false);
  assert.equal(existsSync(record), false);

  assert.ok(progress.length >= 2, 'at least one report while running, one when done');
  assert.deepEqual(
    progress.filter((p) => p.done).map((p) => p.received),
    [body.length],
  );
  assert.equal(progress.at(-1)?.done, true);
  for (const [i, p] of progress.entries()) {
    assert.equal(p.url, url);
    assert.equal(p.total, body.length);
    assert.equal(p.resumedFrom, 0);
    if (i > 0) assert.ok(p.received >= progress[i - 1]!.received, 'received never goes back');
  }
});

test('the cached file is read-only, in a directory made private', async () => {
  const { url, dest } = fresh();
  await download({ url, dest });
  assert.equal(mode(dest), 0o444);
  assert.equal(mode(join(dest, '..')), 0o700);
});

test('an expected sha512 is verified, and is the digest returned', async () => {
  const { url, dest } = fresh();
  const got = await download({ url, dest, expected: { algo: 'sha512', hex: sha512(body).toUpperCase() } });
  assert.deepEqual(got.digest, { algo: 'sha512', hex: sha512(body) });
  assert.equal(got.digest.hex, got.digest.algo === 'sha256' ? sha256(body) : sha512(body));
});

test('a digest mismatch names both digests and leaves nothing behind', async () => {
  const { url, dest, part, record } = fresh();
  const wrong = sha512(other);
  await assert.rejects(download({ url, dest, expected: { algo: 'sha512', hex: wrong } }), (error) => {
    assert.ok(error instanceof UserError);
    assert.equal(
      error.message,
      `${url}: sha512 mismatch: expected ${wrong}, got ${sha512(body)}; nothing was cached`,
    );
    return true;
  });
  for (const path of [dest, part, record]) assert.equal(existsSync(path), false, path);
});

test('a download cut half-way keeps its part, and the next one resumes it with a range', async () => {
  const { path, url, dest, part, record } = fresh();
  server.cutAfter(path, 1.5 * MiB);
  await assert.rejects(download({ url, dest }), (error) => {
    assert.ok(error instanceof UserError);
    assert.match(error.message, new RegExp(`^GET ${url}: .*run the pull again to resume$`));
    return true;
  });
  const kept = statSync(part).size;
  assert.ok(kept > 0 && kept <= 1.5 * MiB, `kept ${kept} bytes`);
  assert.equal(mode(part), 0o600);
  assert.ok(existsSync(record));

  const progress: DownloadProgress[] = [];
  const got = await download({
    url,
    dest,
    expected: { algo: 'sha256', hex: sha256(body) },
    onProgress: (p) => progress.push(p),
  });
  assert.equal(lastGet(path)?.range, `bytes=${kept}-`);
  assert.equal(lastGet(path)?.ifRange, got.etag);
  assert.equal(got.digest.hex, got.digest.algo === 'sha256' ? sha256(body) : sha512(body));
  assert.ok(readFileSync(dest).equals(body));
  assert.equal(progress.at(-1)?.resumedFrom, kept);
  assert.equal(existsSync(record), false);
});

test('a file changed upstream between the cut and the resume is downloaded again whole', async () => {
  const { path, url, dest } = fresh();
  server.cutAfter(path, MiB);
  await assert.rejects(download({ url, dest }), /resume/);
  const oldEtag = (await head(url)).etag;
  server.serve(path, { body: other });

  const got = await download({ url, dest });
  assert.equal(lastGet(path)?.ifRange, oldEtag, 'asked for the rest of the old version');
  assert.notEqual(got.etag, oldEtag);
  assert.equal(got.digest.hex, got.digest.algo === 'sha256' ? sha256(other) : sha512(other));
  assert.ok(readFileSync(dest).equals(other), 'no old bytes spliced in');
});

test('a part without a record of its validator is not trusted: the download starts over', async () => {
  const { path, url, dest, part, record } = fresh();
  server.cutAfter(path, MiB);
  await assert.rejects(download({ url, dest }), /resume/);
  writeFileSync(record, JSON.stringify({ url: `${url}?elsewhere`, etag: '"x"' }));

  const got = await download({ url, dest });
  assert.equal(lastGet(path)?.range, undefined);
  assert.equal(got.digest.hex, got.digest.algo === 'sha256' ? sha256(body) : sha512(body));
  assert.equal(existsSync(part), false);
});

test('a part that is whole already (416) is downloaded again', async () => {
  const { path, url, dest, part, record } = fresh();
  const { etag } = await head(url);
  mkdirSync(dirname(part), { recursive: true });
  writeFileSync(part, body);
  writeFileSync(record, JSON.stringify({ url, etag, total: body.length }));
  const got = await download({ url, dest });
  const gets = server.requests.filter((r) => r.method === 'GET' && r.path === path);
  assert.deepEqual(
    gets.map((r) => r.range),
    [`bytes=${body.length}-`, undefined],
    'the rest (nothing: 416), then the whole file',
  );
  assert.equal(got.digest.hex, got.digest.algo === 'sha256' ? sha256(body) : sha512(body));
});

test('a 404 is a one-line error naming the URL and changes no file', async () => {
  const url = `${server.url}/missing.qcow2`;
  const dest = join(dir, 'missing', 'image.qcow2');
  await assert.rejects(download({ url, dest }), new UserError(`GET ${url}: HTTP 404 Not Found`));
  assert.equal(existsSync(`${dest}.part`), false);
  assert.equal(existsSync(`${dest}.part.json`), false);
  assert.equal(existsSync(dest), false);

  // A part from an earlier try survives a 404 (the mirror may be back tomorrow).
  writeFileSync(`${dest}.part`, 'partial');
  writeFileSync(`${dest}.part.json`, JSON.stringify({ url, etag: '"e"' }));
  await assert.rejects(download({ url, dest }), /HTTP 404/);
  assert.equal(readFileSync(`${dest}.part`, 'utf8'), 'partial');
});

test('a server that stops sending fails after the idle timeout, keeping the part', async () => {
  const { path, url, dest, part } = fresh();
  server.stallAfter(path, MiB);
  const started = Date.now();
  await assert.rejects(download({ url, dest, idleTimeoutMs: 500 }), (error) => {
    assert.ok(error instanceof UserError);
    assert.equal(
      error.message,
      `GET ${url}: no data for 0.5 s (after ${MiB} of ${body.length} bytes); run the pull again to resume`,
    );
    return true;
  });
  assert.ok(Date.now() - started < 10_000, 'no hang');
  assert.equal(statSync(part).size, MiB);
});

test('an abort rejects with the reason and keeps the part', async () => {
  const { path, url, dest, part } = fresh();
  server.stallAfter(path, MiB);
  const controller = new AbortController();
  const done = download({ url, dest, signal: controller.signal });
  setTimeout(() => controller.abort(), 300);
  await assert.rejects(done, { name: 'AbortError' });
  assert.ok(existsSync(part));
});

test('redirects are followed', async () => {
  const { path, dest } = fresh();
  server.redirect('/latest.qcow2', path);
  const got = await download({ url: `${server.url}/latest.qcow2`, dest });
  assert.equal(got.digest.hex, got.digest.algo === 'sha256' ? sha256(body) : sha512(body));
});

test('a refused connection is a user error naming the URL', async () => {
  const gone = await startImageServer();
  await gone.close();
  const url = `${gone.url}/x`;
  await assert.rejects(download({ url, dest: join(dir, 'refused', 'x') }), (error) => {
    assert.ok(error instanceof UserError);
    assert.match(error.message, new RegExp(`^GET ${url}: .*ECONNREFUSED`));
    return true;
  });
});

test('fetchText reads a checksum list and refuses one over 1 MiB', async () => {
  server.serve('/SHA256SUMS', { body: `${sha256(body)}  image.qcow2\n` });
  assert.equal(await fetchText(`${server.url}/SHA256SUMS`), `${sha256(body)}  image.qcow2\n`);

  server.serve('/BIG', { body: Buffer.alloc(MiB + 1, 'a') });
  await assert.rejects(fetchText(`${server.url}/BIG`), (error) => {
    assert.ok(error instanceof UserError);
    assert.match(error.message, /1 MiB/);
    return true;
  });
  await assert.rejects(fetchText(`${server.url}/nope`), /HTTP 404 Not Found/);
});

test('head says the size and validators, and a status instead of throwing', async () => {
  const { url } = fresh();
  const got = await head(url);
  assert.equal(got.status, 200);
  assert.equal(got.size, body.length);
  assert.match(got.etag ?? '', /^".+"$/);
  assert.ok(got.lastModified);
  assert.deepEqual(await head(`${server.url}/nope`), { status: 404 });
});
