// The download rate of `holos pull` against curl, from one local server. A file of random data
// is served by the tests' mirror (test/support/mirror.ts) as debian:12, beside a SHA512SUMS, so
// holos does all a real pull does: fetch the checksum list, download, hash, fsync, rename and
// record. Each run pulls into a fresh state dir (HOLOS_STATE_DIR) with HOLOS_IMAGE_MIRROR set.
//
// The columns, in turn within each round (the order rotating from round to round, so that a
// busy machine and the page cache weigh on every column alike):
//   holos        node <checkout>/dist/cli.js pull debian:12 --json (the whole command)
//   curl         curl -s -o <file> <url>
//   curl+fsync   the same, then `sync <file>` (holos fsyncs the image before it renames it)
//   curl|sha512  curl -s <url> | sha512sum (holos hashes while it downloads)
//   curl>null    curl -s -o /dev/null <url>: what the server and loopback give at most
// Rates are the file's size over the whole command's wall time; for holos also over the
// download alone (its own `download` events: first byte to the end, the fsync included).
// With further checkouts (each built), each is a holos column of its own, for A/B of a change.
//
//   node --import tsx bench/pull.ts [MiB] [runs] [checkout …]   (default: 1024 MiB, 3 runs, this checkout)

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startMirror } from '../test/support/mirror.js';

const mib = Number(process.argv[2] ?? 1024);
const runs = Number(process.argv[3] ?? 3);
const checkouts = process.argv.slice(4).map((dir) => resolve(dir));
if (checkouts.length === 0) checkouts.push(resolve(import.meta.dirname, '..'));

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Runs a command without blocking this process's event loop: the server lives here. */
function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ ms: number; stdout: string }> {
  const started = performance.now();
  return new Promise((done, fail) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', fail);
    child.on('close', (code) => {
      const ms = performance.now() - started;
      if (code === 0) done({ ms, stdout: Buffer.concat(out).toString() });
      else fail(new Error(`${command} ${args.join(' ')}: exit ${code}\n${Buffer.concat(err).toString()}`));
    });
  });
}

const root = mkdtempSync(join(tmpdir(), 'holos-bench-pull-'));
const mirror = await startMirror();
try {
  const file = join(root, 'image.qcow2');
  await run('sh', ['-c', `head -c ${mib}M /dev/urandom > ${file}`]);
  const bytes = mib * 1024 * 1024;
  const { url: upstream } = await mirror.serveAs('debian:12', file);
  const url = `${mirror.url}/${new URL(upstream).host}${new URL(upstream).pathname}`;
  const out = join(root, 'curl.out');
  const state = join(root, 'state');

  interface Column {
    name: string;
    /** One run: its wall time, and for holos the download's own (first byte to done). */
    once(): Promise<{ ms: number; downloadMs?: number }>;
  }
  const holos = (checkout: string, label: string): Column => ({
    name: label,
    async once() {
      rmSync(state, { recursive: true, force: true });
      mkdirSync(state);
      const env = { ...process.env, HOLOS_STATE_DIR: state, HOLOS_IMAGE_MIRROR: mirror.url };
      const { ms, stdout } = await run(
        process.execPath,
        [join(checkout, 'dist', 'cli.js'), 'pull', 'debian:12', '--json'],
        env,
      );
      const events = stdout
        .split('\n')
        .filter(Boolean)
        .map(
          (l) => JSON.parse(l) as { type: string; done?: boolean; received?: number; elapsed_ms?: number },
        );
      const done = events.find((e) => e.type === 'download' && e.done);
      const pulled = events.find((e) => e.type === 'pulled') as { size?: number } | undefined;
      if (!done || pulled?.size !== bytes) throw new Error(`${label}: no whole download in ${stdout}`);
      rmSync(state, { recursive: true, force: true });
      return { ms, downloadMs: done.elapsed_ms! };
    },
  });
  const shell = (name: string, script: string): Column => ({
    name,
    async once() {
      const { ms } = await run('bash', ['-o', 'pipefail', '-c', script]);
      rmSync(out, { force: true });
      return { ms };
    },
  });
  const columns: Column[] = [
    ...checkouts.map((c, i) => holos(c, checkouts.length > 1 ? `holos#${i + 1}` : 'holos')),
    shell('curl', `curl -sf -o ${out} ${url}`),
    shell('curl+fsync', `curl -sf -o ${out} ${url} && sync ${out}`),
    shell('curl|sha512', `curl -sf ${url} | sha512sum > /dev/null`),
    shell('curl>null', `curl -sf -o /dev/null ${url}`),
  ];

  const rate = (ms: number) => bytes / 1024 / 1024 / (ms / 1000);
  const wall = columns.map((): number[] => []);
  const download = columns.map((): number[] => []);
  // Per round, each holos against curl, against curl|sha512sum, and against the first holos.
  const ratios = checkouts.map(() => ({
    curl: [] as number[],
    hashed: [] as number[],
    first: [] as number[],
  }));
  console.log(
    `${mib} MiB of random data from ${mirror.url} (node http, this process); ${runs} rounds; MiB/s over the whole command`,
  );
  console.log(`round  ${columns.map((c) => c.name.padStart(12)).join('')}`);
  for (let r = 0; r < runs; r++) {
    const order = columns.map((_, i) => (i + r) % columns.length);
    const ms: number[] = [];
    for (const i of order) {
      await run('sync', []); // no writeback left over from the column before
      const got = await columns[i]!.once();
      ms[i] = got.ms;
      wall[i]!.push(rate(got.ms));
      if (got.downloadMs !== undefined) download[i]!.push(rate(got.downloadMs));
    }
    const [curl, hashed] = [ms[checkouts.length]!, ms[checkouts.length + 2]!];
    checkouts.forEach((_, c) => {
      ratios[c]!.curl.push(curl / ms[c]!);
      ratios[c]!.hashed.push(hashed / ms[c]!);
      ratios[c]!.first.push(ms[0]! / ms[c]!);
    });
    console.log(`${String(r + 1).padEnd(7)}${ms.map((m) => rate(m).toFixed(0).padStart(12)).join('')}`);
  }
  console.log(`median ${wall.map((w) => median(w).toFixed(0).padStart(12)).join('')}`);
  console.log("rate ratios, median of the rounds' (paired) ratios:");
  checkouts.forEach((c, i) => {
    const r = ratios[i]!;
    const first = i > 0 ? `, vs ${columns[0]!.name} ${median(r.first).toFixed(2)}` : '';
    console.log(
      `${columns[i]!.name} (${c}): download alone ${median(download[i]!).toFixed(0)} MiB/s; holos/curl ${median(r.curl).toFixed(2)}, holos/(curl|sha512) ${median(r.hashed).toFixed(2)}${first}`,
    );
  });
} finally {
  await mirror.close();
  rmSync(root, { recursive: true, force: true });
}
