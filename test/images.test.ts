import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { chooseVersion, type ImageRecord } from '../src/images/store.js';
import { sourceOf, type ImageSource } from '../src/images/source.js';
import { holosArgs } from './support/cli.js';
import { digestOf, startMirror, type Mirror } from './support/mirror.js';

// The image cache through the CLI, against a local mirror (test/support/mirror.ts) that serves
// real qcow2 files as catalog images beside checksum files in the distributions' own format.
// No VM starts here: the e2e suite boots one from a pulled image (test/e2e/stack.test.ts).

const root = mkdtempSync(join(tmpdir(), 'holos-images-'));
let mirror: Mirror;
/** A 6 MiB qcow2 (data written, so a cut half way is half way) and another for a newer build. */
let image: string;
let newer: string;

const qemuImg = (...args: string[]) => execFileSync('qemu-img', args, { stdio: 'pipe' });

function qcow2(name: string, pattern: number): string {
  const path = join(root, name);
  qemuImg('create', '-q', '-f', 'qcow2', path, '64M');
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P ${pattern} 0 6M`, path], { stdio: 'ignore' });
  return path;
}

before(async () => {
  image = qcow2('base.qcow2', 1);
  newer = qcow2('newer.qcow2', 2);
  mirror = await startMirror();
});
after(async () => {
  await mirror.close();
  rmSync(root, { recursive: true, force: true });
});

let dirs = 0;
/** A fresh state dir (and a project dir with `compose` as its holos.yaml, when given). */
function place(compose?: string) {
  const dir = join(root, `case-${++dirs}`);
  mkdirSync(join(dir, 'project'), { recursive: true });
  if (compose) writeFileSync(join(dir, 'project', 'holos.yaml'), compose);
  return { state: join(dir, 'state'), project: join(dir, 'project') };
}

async function holos(
  args: string[],
  where: { state: string; project?: string },
  env: NodeJS.ProcessEnv = {},
) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...holosArgs, ...args], {
      cwd: where.project ?? root,
      env: {
        ...process.env,
        HOLOS_FILE: '',
        HOLOS_STATE_DIR: where.state,
        HOLOS_IMAGE_MIRROR: mirror.url,
        NO_PROXY: '127.0.0.1,localhost',
        ...env,
      },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** The images directory, without the digests cache (util/digest.ts) and lock directories. */
const imagesOf = (state: string) =>
  (existsSync(join(state, 'images')) ? readdirSync(join(state, 'images')).sort() : []).filter(
    (n) => n !== 'digests.json' && !n.endsWith('.lock'),
  );
const jsonLines = (text: string) =>
  text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
/** The one-line error of a failed verb: `holos: …` (after any progress lines), no stack trace. */
function oneLine(stderr: string): string {
  const errors = stderr
    .trim()
    .split('\n')
    .filter((l) => l.startsWith('holos: ') && !l.startsWith('holos: warning'));
  assert.equal(errors.length, 1, stderr);
  assert.doesNotMatch(stderr, /\n\s+at /);
  assert.ok(stderr.trim().endsWith(errors[0]!), stderr);
  return errors[0]!;
}

test('pull: progress as JSON, the digest verified and recorded beside a read-only file; a second pull only asks for the checksum', async () => {
  const { digest } = await mirror.serveAs('debian:12', image);
  const where = place();
  const before = mirror.server.requests.length;
  const r = await holos(['pull', '--json', 'debian'], where);
  assert.equal(r.code, 0, r.stderr);
  const events = jsonLines(r.stdout);
  const progress = events.filter((e) => e.type === 'download');
  assert.ok(progress.length >= 1, r.stdout);
  const last = progress.at(-1)!;
  assert.equal(last.done, true);
  assert.equal(last.received, statSync(image).size);
  assert.equal(last.total, statSync(image).size);
  const pulled = events.find((e) => e.type === 'pulled')!;
  assert.equal(pulled.image, 'debian:12');
  assert.equal(pulled.digest, digest);
  assert.equal(pulled.downloaded, true);

  assert.deepEqual(imagesOf(where.state), ['debian-12.json', 'debian-12.qcow2']);
  const file = join(where.state, 'images', 'debian-12.qcow2');
  assert.equal(statSync(file).mode & 0o777, 0o444, 'a base never changes under an overlay');
  assert.equal(statSync(join(where.state, 'images')).mode & 0o777, 0o700);
  const record = JSON.parse(
    readFileSync(join(where.state, 'images', 'debian-12.json'), 'utf8'),
  ) as ImageRecord;
  assert.equal(record.versions[0]!.digest, digest);
  assert.equal(
    record.versions[0]!.url,
    'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.qcow2',
  );

  // debian:bookworm is the same image: one cache file, and the checksum says it is current.
  const again = await holos(['pull', 'debian:bookworm'], where);
  assert.equal(again.code, 0, again.stderr);
  assert.match(
    again.stdout,
    /^debian:12: up to date: .*debian-12\.qcow2 \(sha512:[0-9a-f]{16}…, 6\.\d MiB\)$/m,
  );
  const asked = mirror.server.requests.slice(before).map((q) => `${q.method} ${q.path.split('/').pop()}`);
  assert.deepEqual(asked, ['GET SHA512SUMS', 'GET debian-12-generic-amd64.qcow2', 'GET SHA512SUMS']);
});

test('pull: a wrong checksum caches nothing and names the URL, the digest expected and the one that came', async () => {
  const wrong = 'ab'.repeat(64);
  await mirror.serveAs('debian:13', image, { digest: wrong });
  const where = place();
  const r = await holos(['pull', 'debian:13'], where);
  assert.notEqual(r.code, 0);
  const line = oneLine(r.stderr);
  assert.match(line, /debian-13-generic-amd64\.qcow2/);
  assert.ok(line.includes(wrong), line);
  assert.ok(line.includes(await digestOf(image, 'sha512')), line);
  assert.deepEqual(imagesOf(where.state), [], 'no record, no file, no .part');
});

test('pull: a connection cut half way fails saying so; the next pull resumes with a Range request', async () => {
  await mirror.serveAs('ubuntu:jammy', image);
  const path = mirror.imagePath('ubuntu:jammy');
  const half = Math.floor(statSync(image).size / 2);
  mirror.server.cutAfter(path, half);
  const where = place();
  const cut = await holos(['pull', 'ubuntu:jammy'], where);
  assert.notEqual(cut.code, 0);
  assert.match(oneLine(cut.stderr), /resume/);
  assert.ok(
    imagesOf(where.state).some((n) => n.endsWith('.part')),
    'the part is kept for the resume',
  );

  const resumed = await holos(['pull', 'ubuntu:jammy'], where);
  assert.equal(resumed.code, 0, resumed.stderr);
  const gets = mirror.imageRequests('ubuntu:jammy');
  const range = gets.at(-1)!.range ?? '';
  assert.match(range, /^bytes=[1-9]\d*-$/, JSON.stringify(gets));
  assert.deepEqual(imagesOf(where.state), ['ubuntu-jammy.json', 'ubuntu-jammy.qcow2'], 'no part left');
  assert.match(resumed.stdout, /^ubuntu:jammy: pulled /m);
});

test('pull: two at once download the image once; the second waits and finds it', async () => {
  await mirror.serveAs('fedora:43', image);
  const where = place();
  const before = mirror.imageRequests('fedora:43').length;
  const [a, b] = await Promise.all([holos(['pull', 'fedora'], where), holos(['pull', 'fedora:43'], where)]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  assert.equal(mirror.imageRequests('fedora:43').length - before, 1, 'one download');
  assert.deepEqual([a.stdout, b.stdout].map((o) => /: (pulled|up to date:) /.exec(o)![1]).sort(), [
    'pulled',
    'up to date:',
  ]);
});

test('pull: a 404 names the URL and leaves nothing behind', async () => {
  const where = place();
  const r = await holos(['pull', 'rocky:10'], where);
  assert.notEqual(r.code, 0);
  assert.match(oneLine(r.stderr), /HTTP 404.*Rocky|Rocky.*HTTP 404|404/);
  assert.match(r.stderr, /127\.0\.0\.1/);
  assert.deepEqual(imagesOf(where.state), []);
});

test('pull: a URL image without a checksum is pulled with a warning that says how to pin it', async () => {
  mirror.server.serve('/plain/disk.qcow2', { file: image });
  const where = place();
  const url = `${mirror.server.url}/plain/disk.qcow2`;
  const r = await holos(['pull', url], where, { HOLOS_IMAGE_MIRROR: '' });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /no published checksum.*holos images lock/);
  const cached = imagesOf(where.state).filter((n) => n.endsWith('.qcow2'));
  assert.equal(cached.length, 1);
  assert.match(cached[0]!, /^url-disk-[0-9a-f]{8}\.qcow2$/);
});

test('images rm refuses a base an instance is made on, naming it; prune removes only what no disk uses', async () => {
  await mirror.serveAs('debian:12', image);
  const where = place();
  assert.equal((await holos(['pull', 'debian:12'], where)).code, 0);
  await mirror.serveAs('debian:12', newer);
  const second = await holos(['pull', 'debian:12'], where);
  assert.equal(second.code, 0, second.stderr);
  assert.match(
    second.stdout,
    /pulled .*debian-12@2\.qcow2/,
    'a newer build is a new version, not a replacement',
  );

  // An instance whose root disk is made on version 1 (as holos makes it: qemu-img, -b).
  const disk = join(where.state, 'instances', 'shop', 'web-0', 'disk.qcow2');
  mkdirSync(join(disk, '..'), { recursive: true });
  qemuImg(
    'create',
    '-q',
    '-f',
    'qcow2',
    '-F',
    'qcow2',
    '-b',
    join(where.state, 'images', 'debian-12.qcow2'),
    disk,
  );

  const listed = await holos(['images', '--format', 'json'], where);
  const { cached } = JSON.parse(listed.stdout) as {
    cached: { file: string; used_by: string[]; current: boolean }[];
  };
  assert.deepEqual(
    cached.map((c) => [c.file, c.used_by, c.current]),
    [
      ['debian-12.qcow2', ['shop/web-0'], false],
      ['debian-12@2.qcow2', [], true],
    ],
  );

  const rm = await holos(['images', 'rm', 'debian:12'], where);
  assert.notEqual(rm.code, 0);
  assert.match(oneLine(rm.stderr), /debian:12 \(debian-12\.qcow2\) is the base of shop\/web-0/);
  assert.ok(existsSync(join(where.state, 'images', 'debian-12.qcow2')));
  assert.ok(existsSync(join(where.state, 'images', 'debian-12@2.qcow2')), 'rm is all or nothing');

  const prune = await holos(['images', 'prune'], where);
  assert.equal(prune.code, 0, prune.stderr);
  assert.match(prune.stdout, /removed debian:12 debian-12@2\.qcow2/);
  assert.deepEqual(imagesOf(where.state), ['debian-12.json', 'debian-12.qcow2']);
  const verify = await holos(['images', 'verify'], where);
  assert.equal(verify.code, 0, verify.stderr);
  assert.match(verify.stdout, /debian:12 debian-12\.qcow2: ok/);

  rmSync(join(where.state, 'instances'), { recursive: true });
  assert.equal((await holos(['images', 'rm', 'debian'], where)).code, 0);
  assert.deepEqual(imagesOf(where.state), []);
});

const stack = (image: string) => `name: locked
services:
  app:
    image: ${image}
`;

test('lock: images lock pins each image; --locked refuses an image the lock lacks; a pinned digest is what a pull must get', async () => {
  const { digest } = await mirror.serveAs('debian:12', image);
  const where = place(stack('debian:12'));
  const noLock = await holos(['plan', '--locked'], where);
  assert.notEqual(noLock.code, 0);
  assert.match(
    oneLine(noLock.stderr),
    /holos\.images\.lock: no entry for debian:12.*--locked.*holos images lock/,
  );

  const lock = await holos(['images', 'lock'], where);
  assert.equal(lock.code, 0, lock.stderr);
  const file = join(where.project, 'holos.images.lock');
  const text = readFileSync(file, 'utf8');
  assert.ok(text.includes(digest), text);
  assert.match(text, /debian:12:\n\s+url: https:\/\/cloud\.debian\.org\//);
  const plan = await holos(['plan', '--locked'], where);
  assert.equal(plan.code, 0, plan.stderr);

  // The upstream moved on: the lock still asks for the old bytes, so the pull refuses the new.
  rmSync(join(where.state, 'images'), { recursive: true });
  await mirror.serveAs('debian:12', newer);
  const pull = await holos(['pull'], where);
  assert.notEqual(pull.code, 0);
  assert.match(oneLine(pull.stderr), /sha512 mismatch.*nothing was cached/);

  // A lock file that is not one: file:line:col and what to do.
  writeFileSync(
    file,
    'lock_version: 1\nimages:\n  debian:12:\n    url: https://x/y.qcow2\n    digest: md5:abc\n',
  );
  const bad = await holos(['plan'], where);
  assert.notEqual(bad.code, 0);
  assert.match(oneLine(bad.stderr), /holos\.images\.lock:5:\d+: .*digest.*holos images lock/);
});

test('validate stays offline: catalog names are checked from the catalog data, no request is made', async () => {
  const where = place(stack('debian:12'));
  const before = mirror.server.requests.length;
  const ok = await holos(['validate'], where, { HOLOS_IMAGE_MIRROR: 'http://127.0.0.1:9/' });
  assert.equal(ok.code, 0, ok.stderr);
  writeFileSync(join(where.project, 'holos.yaml'), stack('debian:11'));
  const bad = await holos(['validate'], where);
  assert.notEqual(bad.code, 0);
  assert.match(
    bad.stdout + bad.stderr,
    /holos\.yaml:4:\d+: .*unknown tag "11".*12, bookworm, 13, trixie|holos\.yaml:4:\d+: .*"11"/,
  );
  assert.equal(mirror.server.requests.length, before);
});

test('plan: a missing image is a pull with its size, from the mirror', async () => {
  await mirror.serveAs('debian:12', image);
  const where = place(stack('debian:12'));
  const r = await holos(['plan', '--json'], where);
  assert.equal(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout) as { actions: { id: string; verb: string; reason: string }[] };
  const pull = plan.actions.find((a) => a.id === 'image:debian:12')!;
  assert.equal(pull.verb, 'pull');
  assert.match(
    pull.reason,
    /^download 6\.\d MiB from http:\/\/127\.0\.0\.1:\d+\/mirror\/cloud\.debian\.org\/.* \(HOLOS_IMAGE_MIRROR\)$/,
  );
  const never = await holos(['plan', '--pull', 'never'], where);
  assert.notEqual(never.code, 0);
  assert.match(
    oneLine(never.stderr),
    /debian:12 is not in the cache and --pull never was given; run holos pull debian:12/,
  );
});

test('plan --pull always asks upstream: a build the cache lacks is a pull the plan shows', async () => {
  await mirror.serveAs('debian:12', image);
  const where = place(stack('debian:12'));
  assert.equal((await holos(['pull', 'debian:12'], where)).code, 0);
  const before = await holos(['plan', '--pull', 'always', '--json'], where);
  const plain = JSON.parse(before.stdout) as { actions: { id: string; verb: string; cause: string }[] };
  assert.equal(
    plain.actions.find((a) => a.id === 'image:debian:12'),
    undefined,
    'upstream has what is cached',
  );
  await mirror.serveAs('debian:12', newer);
  const r = await holos(['plan', '--pull', 'always', '--json'], where);
  assert.equal(r.code, 0, r.stderr);
  const plan = JSON.parse(r.stdout) as {
    actions: { id: string; verb: string; cause: string; reason: string }[];
  };
  const pull = plan.actions.find((a) => a.id === 'image:debian:12')!;
  assert.deepEqual([pull.verb, pull.cause], ['pull', 'upstream']);
  assert.match(pull.reason, /^a newer build upstream \(--pull always\): download 6\.\d MiB from /);
  const cached = JSON.parse((await holos(['plan', '--json'], where)).stdout) as typeof plan;
  assert.equal(
    cached.actions.some((a) => a.id === 'image:debian:12'),
    false,
    'without --pull always the cached build does',
  );
});

// Which version a project uses (pure): the lock's, else its pin, else the newest.
const source = sourceOf('debian:12') as ImageSource;
const record: ImageRecord = {
  schema_version: 1,
  name: 'debian:12',
  key: 'debian-12',
  current: 'debian-12@2.qcow2',
  versions: [
    { file: 'debian-12.qcow2', url: 'u', digest: 'sha512:1', size: 1, pulled_at: '2026-11-01T00:00:00Z' },
    { file: 'debian-12@2.qcow2', url: 'u', digest: 'sha512:2', size: 1, pulled_at: '2026-12-01T00:00:00Z' },
  ],
};

test('chooseVersion: the pin holds against a newer build (reported), --pull always moves to what upstream serves, the lock rules', () => {
  assert.deepEqual(chooseVersion({ source, record: undefined }), { file: 'debian-12.qcow2', pull: true });
  const pinned = chooseVersion({ source, record, pinned: 'debian-12.qcow2' });
  assert.equal(pinned.file, 'debian-12.qcow2');
  assert.equal(pinned.newer?.file, 'debian-12@2.qcow2');
  assert.equal(chooseVersion({ source, record }).file, 'debian-12@2.qcow2', 'no pin: the newest');
  // --pull always: upstream's digest decides, a cached version of it or a new one to pull.
  assert.deepEqual(
    chooseVersion({ source, record, pinned: 'debian-12.qcow2', upstream: { digest: 'sha512:2' } }),
    {
      file: 'debian-12@2.qcow2',
      pull: false,
      expected: 'sha512:2',
    },
  );
  assert.deepEqual(
    chooseVersion({ source, record, pinned: 'debian-12.qcow2', upstream: { digest: 'sha512:9' } }),
    {
      file: 'debian-12@3.qcow2',
      pull: true,
      expected: 'sha512:9',
    },
  );
  // A URL without a checksum: unchanged validators keep the newest, anything else pulls.
  assert.equal(chooseVersion({ source, record, upstream: { unchanged: true } }).pull, false);
  assert.equal(chooseVersion({ source, record, upstream: { unchanged: false } }).pull, true);
  // The lock file rules, whatever upstream says.
  assert.deepEqual(chooseVersion({ source, record, locked: 'sha512:1', upstream: { digest: 'sha512:2' } }), {
    file: 'debian-12.qcow2',
    pull: false,
    expected: 'sha512:1',
  });
  assert.deepEqual(chooseVersion({ source, record, locked: 'sha512:3' }), {
    file: 'debian-12@3.qcow2',
    pull: true,
    expected: 'sha512:3',
  });
});

test('pull goes through HTTP_PROXY (unless NO_PROXY names the host)', async () => {
  // A forward proxy on 127.0.0.1 that tunnels (CONNECT) or relays absolute-form requests.
  const seen: string[] = [];
  const proxy = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const upstream = httpRequest(req.url!, { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode!, answer.headers);
      answer.pipe(res);
    });
    req.pipe(upstream);
  });
  proxy.on('connect', (req, client: Socket, head: Buffer) => {
    seen.push(`CONNECT ${req.url}`);
    const [host, port] = req.url!.split(':');
    const upstream = connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client).pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  try {
    await mirror.serveAs('debian:12', image);
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const where = place();
    const r = await holos(['pull', 'debian:12'], where, { HTTP_PROXY: proxyUrl, NO_PROXY: '', no_proxy: '' });
    assert.equal(r.code, 0, r.stderr);
    const host = new URL(mirror.url).host;
    assert.ok(
      seen.some((s) => s === `CONNECT ${host}` || s.startsWith(`GET ${mirror.url}`)),
      `the proxy saw: ${seen.join(', ')}`,
    );
    seen.length = 0;
    const direct = await holos(['pull', 'debian:12'], place(), {
      HTTP_PROXY: proxyUrl,
      NO_PROXY: '127.0.0.1',
    });
    assert.equal(direct.code, 0, direct.stderr);
    assert.deepEqual(seen, [], 'NO_PROXY bypasses the proxy');
  } finally {
    proxy.closeAllConnections();
    await new Promise((resolve) => proxy.close(resolve));
  }
});

test('on a terminal the download is one live line, redrawn in place and cleared for the result', async () => {
  await mirror.serveAs('debian:12', image);
  const where = place();
  const socket = `holos-images-${process.pid}`;
  const tmux = (...args: string[]) => execFileSync('tmux', ['-L', socket, ...args], { encoding: 'utf8' });
  const env = Object.entries({
    HOLOS_STATE_DIR: where.state,
    HOLOS_IMAGE_MIRROR: mirror.url,
    NO_PROXY: '127.0.0.1',
  });
  const command = [
    'env',
    ...env.map(([k, v]) => `${k}=${v}`),
    process.execPath,
    ...holosArgs,
    'pull',
    'debian:12',
  ].join(' ');
  tmux('new-session', '-d', '-s', 'main', '-x', '160', '-y', '20', `${command}; echo EXIT=$?; exec sleep 60`);
  try {
    let screen = '';
    for (const deadline = Date.now() + 60_000; !/^EXIT=\d+/m.test(screen) && Date.now() < deadline;) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      screen = tmux('capture-pane', '-p', '-J', '-t', 'main');
    }
    assert.match(screen, /^EXIT=0/m, screen);
    const lines = screen.split('\n').filter((l) => l.trim() !== '');
    // The live line ("… of … (n%)") was drawn at the first chunk and cleared: only results stay.
    assert.deepEqual(
      lines.map((l) =>
        l.replace(/[\d.]+ (KiB|MiB)(\/s)?/g, 'N').replace(/\S*debian-12\.qcow2 \(sha512:\w+…/, 'FILE'),
      ),
      ['image debian:12: downloaded N at N', 'debian:12: pulled FILE, N)', 'EXIT=0'],
    );
  } finally {
    tmux('kill-server');
  }
});
