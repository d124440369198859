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

import { execFileSync, spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { shellQuote } from '../src/util/shell.js';
import { heldStack, median, netns, seconds } from './support/held.js';

const instances = Number(process.argv[2] ?? 10);
const runs = Number(process.argv[3] ?? 3);

const stack = heldStack({ checkout: resolve(import.meta.dirname, '..'), instances, label: 'up' });
const { stateDir, cli } = stack;
const scratch = join(stack.root, 'script');
const scriptNs = netns('up-sh');
const peakKib = (stderr: string) => Number(stderr.trim().split('\n').pop());

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

/** Kills the script's QEMUs (their pid files are under the scratch directory) and deletes their disks. */
async function killScriptQemus() {
  const dir = join(scratch, 'instances', 'bench');
  const instances = existsSync(dir) ? readdirSync(dir).map((name) => join(dir, name)) : [];
  const pidFiles = instances.map((own) => join(own, 'qemu.pid')).filter((file) => existsSync(file));
  const pids = pidFiles.map((file) => Number(readFileSync(file, 'utf8').trim()));
  for (const pid of pids) process.kill(pid, 'SIGKILL');
  while (pids.some((pid) => existsPid(pid))) await sleep(20);
  // The next round creates the disks again; the directories and the seeds' copies stay.
  for (const own of instances) rmSync(join(own, 'disk.qcow2'), { force: true });
  for (const file of pidFiles) rmSync(file, { force: true });
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
  const watch = [
    'netns',
    'exec',
    stack.ns,
    '/usr/bin/time',
    '-f',
    '%M',
    process.execPath,
    cli,
    'watch',
    '--resync',
    '1s',
  ];
  const child = spawn('ip', watch, { cwd: stack.root, env: stack.env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await sleep(8_000); // several resyncs: observe, plan, no action
  execFileSync('pkill', ['-INT', '-f', `${cli} watch`]);
  await new Promise((done) => child.on('exit', done));
  return peakKib(stderr);
}

try {
  const holosMs: number[] = [];
  const scriptMs: number[] = [];
  const ratios: number[] = [];
  let upPeak = 0;
  let watchPeakKib = 0;
  for (let i = 0; i < runs; i++) {
    const up = stack.run(['up'], ['/usr/bin/time', '-f', '%M']);
    holosMs.push(up.ms);
    upPeak = Math.max(upPeak, peakKib(up.stderr));
    if (i === 0) {
      mkdirSync(scratch, { recursive: true });
      writeFileSync(join(scratch, 'up.sh'), shellScript());
      watchPeakKib = await watchPeak();
    }
    stack.run(['down']);
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
  await killScriptQemus().catch(() => undefined);
  scriptNs.close();
  stack.close();
}
