// `holos up` of N instances against a shell script doing the same QEMU work, and the peak memory
// of `up` and of `watch`. The VMs are held before their first instruction (`extra_args: [-S]`)
// so that N emulated CPUs do not compete with what is measured.
//
// The script is made from what holos really ran: for each instance, the `qemu-img create` of
// its overlay on the same base and the same `qemu-system-x86_64` command line (read from
// /proc/<pid>/cmdline), with the state directory's paths moved to a scratch directory that
// holds copies of the seeds. What holos does on top (load, resolve, plan, keys, seeds, the lock,
// the record, the status table) is the difference. Each side runs in its own network namespace,
// the two in turn, A B A B …, and the ratio per pair is what is reported.
//
//   node --import tsx bench/up.ts [instances] [runs]     (root: namespaces; default 10 and 3)

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { shellQuote } from '../src/util/shell.js';

const instances = Number(process.argv[2] ?? 10);
const runs = Number(process.argv[3] ?? 3);
const cli = resolve(import.meta.dirname, '..', 'dist', 'cli.js');

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

function netns(name: string) {
  execFileSync('ip', ['netns', 'add', name]);
  execFileSync('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up']);
  execFileSync('ip', ['netns', 'exec', name, 'ip', 'route', 'add', '224.0.0.0/4', 'dev', 'lo']);
  return { name, close: () => execFileSync('ip', ['netns', 'delete', name], { stdio: 'ignore' }) };
}

const root = mkdtempSync(join(tmpdir(), 'holos-bench-up-'));
const stateDir = join(root, 'state');
const scratch = join(root, 'script');
const env = { ...process.env, HOLOS_STATE_DIR: stateDir, HOLOS_ACCEL: 'tcg' };
execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(root, 'empty.qcow2'), '16M']);
writeFileSync(
  join(root, 'holos.yaml'),
  `name: bench\nservices:\n  app:\n    image: ./empty.qcow2\n    replicas: ${instances}\n    vm: { memory_mb: 128, extra_args: [-S] }\n    stop_grace_period: 1s\n`,
);
const holosNs = netns(`holos-bench-up-${process.pid}`);
const scriptNs = netns(`holos-bench-sh-${process.pid}`);

/** holos in its namespace; with `peak`, under GNU time, returning the peak RSS in KiB too. */
function holos(args: string[], peak = false): { ms: number; peakKib?: number } {
  const time = peak ? ['/usr/bin/time', '-f', '%M'] : [];
  const started = performance.now();
  const run = spawnSync('ip', ['netns', 'exec', holosNs.name, ...time, process.execPath, cli, ...args], {
    cwd: root,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const ms = performance.now() - started;
  const stderr = run.stderr.toString();
  if (run.status !== 0) throw new Error(`holos ${args.join(' ')}: ${stderr}`);
  return peak ? { ms, peakKib: Number(stderr.trim().split('\n').pop()) } : { ms };
}

const instanceDirs = () => {
  const dir = join(stateDir, 'instances', 'bench');
  return readdirSync(dir).map((name) => join(dir, name));
};

/** The script that does holos's QEMU work for this stack: overlays, then QEMUs, as holos ran them. */
function shellScript(): string {
  const lines = ['set -e'];
  for (const dir of instanceDirs()) {
    const pid = readFileSync(join(dir, 'qemu.pid'), 'utf8').trim();
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
    const moved = (arg: string) => arg.replaceAll(stateDir, scratch);
    const own = moved(dir);
    mkdirSync(own, { recursive: true });
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.iso')))
      copyFileSync(join(dir, file), join(own, file));
    const base = JSON.parse(
      execFileSync('qemu-img', ['info', '-U', '--output=json', join(dir, 'disk.qcow2')]).toString(),
    ) as {
      'full-backing-filename': string;
      'backing-filename-format': string;
    };
    lines.push(
      [
        'qemu-img',
        'create',
        '-q',
        '-f',
        'qcow2',
        '-F',
        base['backing-filename-format'],
        '-b',
        base['full-backing-filename'],
        join(own, 'disk.qcow2'),
      ]
        .map(shellQuote)
        .join(' '),
      argv.map(moved).map(shellQuote).join(' '),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Kills the script's QEMUs (their pid files are under the scratch directory) and empties it. */
async function killScriptQemus() {
  const pids = execFileSync('sh', [
    '-c',
    `cat ${shellQuote(scratch)}/instances/bench/*/qemu.pid 2>/dev/null || true`,
  ])
    .toString()
    .split('\n')
    .filter(Boolean)
    .map(Number);
  for (const pid of pids) process.kill(pid, 'SIGKILL');
  while (pids.some((pid) => existsPid(pid))) await sleep(20);
  rmSync(join(scratch, 'instances'), { recursive: true, force: true });
}
const existsPid = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Peak RSS (KiB) of `holos watch` following the converged stack for a few seconds. */
async function watchPeak(): Promise<number> {
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      holosNs.name,
      '/usr/bin/time',
      '-f',
      '%M',
      process.execPath,
      cli,
      'watch',
      '--resync',
      '1s',
    ],
    {
      cwd: root,
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await sleep(8_000); // several resyncs: observe, plan, no action
  execFileSync('pkill', ['-INT', '-f', `${cli} watch`]);
  await new Promise((done) => child.on('exit', done));
  return Number(stderr.trim().split('\n').pop());
}

try {
  const holosMs: number[] = [];
  const scriptMs: number[] = [];
  const ratios: number[] = [];
  let upPeak = 0;
  let watchPeakKib = 0;
  for (let i = 0; i < runs; i++) {
    const up = holos(['up'], true);
    holosMs.push(up.ms);
    upPeak = Math.max(upPeak, up.peakKib ?? 0);
    if (i === 0) {
      mkdirSync(scratch, { recursive: true });
      writeFileSync(join(scratch, 'up.sh'), shellScript());
      watchPeakKib = await watchPeak();
    }
    holos(['down']);
    const started = performance.now();
    execFileSync('ip', ['netns', 'exec', scriptNs.name, 'bash', join(scratch, 'up.sh')], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    scriptMs.push(performance.now() - started);
    await killScriptQemus();
    ratios.push(up.ms / scriptMs.at(-1)!);
  }
  console.log(`instances: ${instances} (held with -S), ${runs} runs`);
  console.log(
    `holos up (create ${instances}) vs the same qemu-img + qemu-system work in a shell script: ${seconds(median(holosMs))} vs ${seconds(median(scriptMs))} (ratio ${median(ratios).toFixed(2)})`,
  );
  console.log(
    `peak memory: up ${(upPeak / 1024).toFixed(0)} MiB, watch ${(watchPeakKib / 1024).toFixed(0)} MiB`,
  );
} finally {
  try {
    holos(['down']);
  } catch {
    // Nothing left to bring down.
  }
  await killScriptQemus().catch(() => undefined);
  holosNs.close();
  scriptNs.close();
  rmSync(root, { recursive: true, force: true });
}
