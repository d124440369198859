// How long observe + plan take on a converged project of 50 running instances (DESIGN.md §4:
// "well under a second"), and the whole `holos plan` and no-op `holos up` commands. The VMs are real QEMU processes, brought up by `holos up` inside a
// private network namespace and held before their first instruction (`extra_args: [-S]`), so
// that 50 emulated CPUs do not starve holos of this host's cores while it is measured.
//
//   node --import tsx bench/observe-plan.ts [instances]     (root: it creates a namespace)

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { planSession } from '../src/reconcile/converge.js';
import { openProject } from '../src/session.js';

const instances = Number(process.argv[2] ?? 50);
const root = mkdtempSync(join(tmpdir(), 'holos-bench-'));
const stateDir = join(root, 'state');
const ns = `holos-bench-${process.pid}`;
const cli = join(import.meta.dirname, '..', 'dist', 'cli.js');
const env = { ...process.env, HOLOS_STATE_DIR: stateDir, HOLOS_ACCEL: 'tcg' };
const holos = (...args: string[]) =>
  execFileSync('ip', ['netns', 'exec', ns, process.execPath, cli, ...args], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

try {
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(root, 'empty.qcow2'), '16M']);
  writeFileSync(
    join(root, 'holos.yaml'),
    `name: bench\nservices:\n  app:\n    image: ./empty.qcow2\n    replicas: ${instances}\n    vm: { memory_mb: 128, extra_args: [-S] }\n    stop_grace_period: 1s\n`,
  );
  execFileSync('ip', ['netns', 'add', ns]);
  execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
  execFileSync('ip', ['netns', 'exec', ns, 'ip', 'route', 'add', '224.0.0.0/4', 'dev', 'lo']);

  let started = performance.now();
  holos('up');
  const upMs = performance.now() - started;

  // In process: what every verb and every watch pass pays before it acts.
  const session = await openProject(stateDir, { cwd: root });
  const inProcess: number[] = [];
  for (let i = 0; i < 10; i++) {
    started = performance.now();
    const { plan } = await planSession(session, { services: { app: 'running' }, strays: 'absent' });
    inProcess.push(performance.now() - started);
    if (plan.actions.length !== 0) throw new Error(`not converged: ${plan.actions.length} actions`);
  }
  // The whole command, as a user runs it (node start-up, load, resolve, observe, plan, print).
  const cliRuns: number[] = [];
  for (let i = 0; i < 5; i++) {
    started = performance.now();
    holos('plan');
    cliRuns.push(performance.now() - started);
  }
  // A no-op `holos up`: the same, plus the lock, the record and the status table.
  const upRuns: number[] = [];
  for (let i = 0; i < 5; i++) {
    started = performance.now();
    holos('up');
    upRuns.push(performance.now() - started);
  }
  console.log(`instances: ${instances} running (held with -S)`);
  console.log(`holos up (create ${instances}):              ${(upMs / 1000).toFixed(2)} s`);
  console.log(
    `observe + plan, in process (median of 10): ${median(inProcess).toFixed(0)} ms (${(median(inProcess) / instances).toFixed(1)} ms per instance)`,
  );
  console.log(`holos plan, whole command (median of 5):   ${median(cliRuns).toFixed(0)} ms`);
  console.log(`holos up, no-op, whole command (median of 5): ${median(upRuns).toFixed(0)} ms`);
} finally {
  try {
    holos('down');
  } catch (error) {
    console.error(`down failed: ${(error as Error).message}`);
  }
  execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
  rmSync(root, { recursive: true, force: true });
}
