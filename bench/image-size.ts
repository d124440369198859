// Whether a no-op `holos up` and `holos plan` grow with the size of the base image: they must
// not, since a cached image's digest is recorded when it is pulled and the base is never hashed
// again. Two projects of the same few instances on `image: debian:12`, one pulled from the
// tests' mirror (test/support/mirror.ts) as a small qcow2 and one as a large one (filled with
// qemu-io, so every byte is there to hash; never booted), each in a state dir and a network
// namespace of its own, the instances held before their first instruction (`extra_args: [-S]`).
// The pulls run outside the namespaces (the mirror is on this host's loopback); up and plan run
// inside them, where the mirror cannot be reached: a no-op needs no network.
//
// Timed: the pull and the first `up` (creating the instances) of each, and `up` again after a
// `down` (the disks made again, on a base whose sha256 is cached by then), then the no-op `up` and
// `plan`, small and large in turn (S L S L …, a pair per run, the order flipped every other
// run), with the ratio large/small per pair; medians printed.
//
//   node --import tsx bench/image-size.ts [small-MiB] [large-MiB] [instances] [runs] [checkout]
//        (default: 100 2048 2 9, this checkout; root: namespaces)

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startMirror } from '../test/support/mirror.js';

const smallMiB = Number(process.argv[2] ?? 100);
const largeMiB = Number(process.argv[3] ?? 2048);
const instances = Number(process.argv[4] ?? 2);
const runs = Number(process.argv[5] ?? 9);

/** The holos that is measured: a built checkout (its dist/cli.js). */
const checkout = resolve(process.argv[6] ?? join(import.meta.dirname, '..'));
const cli = join(checkout, 'dist', 'cli.js');
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Runs a command without blocking this process's event loop (the mirror lives here); its ms. */
function run(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  const started = performance.now();
  return new Promise<number>((done, fail) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'ignore', 'pipe'] });
    const err: Buffer[] = [];
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', fail);
    child.on('close', (code) =>
      code === 0
        ? done(performance.now() - started)
        : fail(new Error(`${command} ${args.join(' ')}: exit ${code}\n${Buffer.concat(err).toString()}`)),
    );
  });
}

const root = mkdtempSync(join(tmpdir(), 'holos-bench-size-'));
const mirror = await startMirror();

/** A project on a base image of `mib` MiB, pulled into a state dir of its own. */
function stack(label: string, mib: number) {
  const dir = join(root, label);
  const stateDir = join(dir, 'state');
  const ns = `holos-size-${label}-${process.pid}`;
  const image = join(dir, 'base.qcow2');
  const env = {
    ...process.env,
    HOLOS_STATE_DIR: stateDir,
    HOLOS_ACCEL: 'tcg',
    HOLOS_IMAGE_MIRROR: mirror.url,
  };
  let made = false;
  return {
    label,
    mib,
    prepare() {
      mkdirSync(stateDir, { recursive: true });
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, `${mib}M`]);
      // qemu-io writes at most 2 GiB at once: 64 MiB a command.
      const writes = Array.from({ length: Math.ceil(mib / 64) }, (_, i) => [
        '-c',
        `write -P 0x5a ${i * 64}M ${Math.min(64, mib - i * 64)}M`,
      ]).flat();
      execFileSync('qemu-io', ['-f', 'qcow2', ...writes, image], { stdio: 'ignore' });
      writeFileSync(
        join(dir, 'holos.yaml'),
        `name: size-${label}\nservices:\n  app:\n    image: debian:12\n    replicas: ${instances}\n    vm: { memory_mb: 128, extra_args: [-S] }\n    stop_grace_period: 1s\n`,
      );
      execFileSync('ip', ['netns', 'add', ns]);
      made = true;
      execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
      execFileSync('ip', ['netns', 'exec', ns, 'ip', 'route', 'add', '224.0.0.0/4', 'dev', 'lo']);
    },
    /** `holos pull debian:12` from the mirror serving this stack's image, outside the namespace. */
    async pull() {
      await mirror.serveAs('debian:12', image);
      return run(process.execPath, [cli, 'pull', 'debian:12'], { env, cwd: dir });
    },
    bytes: () => statSync(image).size,
    /** Entries in the state dir's cache of base-image sha256s (util/digest.ts). */
    digestsCached() {
      try {
        return Object.keys(
          JSON.parse(readFileSync(join(stateDir, 'images', 'digests.json'), 'utf8')) as object,
        ).length;
      } catch {
        return 0;
      }
    },
    /** This project's QEMUs (their command lines name its state dir). */
    qemus: () =>
      spawnSync('pgrep', ['-af', 'qemu-system'], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter((line) => line.includes(stateDir)).length,
    holos: (...args: string[]) =>
      run('ip', ['netns', 'exec', ns, process.execPath, cli, ...args], { env, cwd: dir }),
    async close() {
      if (!made) return;
      try {
        await run('ip', ['netns', 'exec', ns, process.execPath, cli, 'down'], { env, cwd: dir });
      } catch (error) {
        console.error(`${label}: down failed: ${(error as Error).message}`);
      }
      execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
    },
  };
}

const stacks = [stack('small', smallMiB), stack('large', largeMiB)];
try {
  const prepared: string[] = [];
  for (const s of stacks) {
    s.prepare();
    const pullMs = await s.pull();
    const cachedAtPull = s.digestsCached();
    const upMs = await s.holos('up');
    const cachedAtUp = s.digestsCached();
    await s.holos('down');
    const againMs = await s.holos('up');
    const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
    prepared.push(
      `${s.label}: ${(s.bytes() / 2 ** 20).toFixed(0)} MiB qcow2; pull ${seconds(pullMs)}; first up (create ${instances}) ${seconds(upMs)}; after down, up again ${seconds(againMs)}; ${s.qemus()} QEMUs held; digests.json entries after pull ${cachedAtPull}, after first up ${cachedAtUp}`,
    );
  }
  console.log(`${cli}: ${instances} instances per project (held with -S); ${runs} pairs`);
  for (const line of prepared) console.log(line);

  const timeVerb = async (verb: string) => {
    const samples = stacks.map((): number[] => []);
    const ratios: number[] = [];
    for (let i = 0; i < runs; i++) {
      const order = i % 2 ? [1, 0] : [0, 1];
      const ms: number[] = [];
      for (const c of order) ms[c] = await stacks[c]!.holos(verb);
      ms.forEach((m, c) => samples[c]!.push(m));
      ratios.push(ms[1]! / ms[0]!);
    }
    const [small, large] = samples.map(median);
    console.log(
      `holos ${verb.padEnd(4)} no-op, median of ${runs}: small ${small!.toFixed(0)} ms, large ${large!.toFixed(0)} ms; large/small ${median(ratios).toFixed(2)} (median of pairs; range ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})`,
    );
  };
  await timeVerb('up');
  await timeVerb('plan');
} finally {
  for (const s of stacks) await s.close();
  await mirror.close();
  // Every QEMU these projects started is gone (pgrep exits 1 when none is).
  const left = spawnSync('pgrep', ['-af', 'qemu'], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter((line) => line.includes(root));
  rmSync(root, { recursive: true, force: true });
  if (left.length > 0) {
    console.error(`QEMUs left running:\n${left.join('\n')}`);
    process.exitCode = 1;
  } else console.log('no QEMU of these projects is left (pgrep -af qemu)');
}
