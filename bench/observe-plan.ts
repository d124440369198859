// How long observe + plan take on a converged project of 50 running instances (DESIGN.md §5:
// "well under a second"), and the whole `holos plan` and no-op `holos up` commands. The VMs are
// real QEMU processes, brought up by `holos up` inside a private network namespace and held
// before their first instruction (`extra_args: [-S]`), so that 50 emulated CPUs do not starve
// holos of this host's cores while it is measured.
//
// Given another checkout (built: its dist/cli.js), it brings up the same project with that
// holos too, in a namespace of its own, and times the two in turn, A B A B …: the ratio per
// pair holds even when the machine's speed drifts during the run.
//
//   node --import tsx bench/observe-plan.ts [instances] [runs] [baseline-checkout]   (root: namespaces)

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { planSession } from '../src/reconcile/converge.js';
import { targetsFor } from '../src/reconcile/targets.js';
import { openProject } from '../src/session.js';

const instances = Number(process.argv[2] ?? 50);
/** Runs of each whole command (the median is printed). */
const runs = Number(process.argv[3] ?? 5);
const baseline = process.argv[4] && resolve(process.argv[4]);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A project of `instances` held VMs brought up by the holos of `checkout`, in its own namespace. */
function stack(checkout: string, label: string) {
  const root = mkdtempSync(join(tmpdir(), 'holos-bench-'));
  const stateDir = join(root, 'state');
  const ns = `holos-bench-${label}-${process.pid}`;
  const cli = join(checkout, 'dist', 'cli.js');
  const env = { ...process.env, HOLOS_STATE_DIR: stateDir, HOLOS_ACCEL: 'tcg' };
  const holos = (...args: string[]) =>
    execFileSync('ip', ['netns', 'exec', ns, process.execPath, cli, ...args], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  const timed = (...args: string[]) => {
    const started = performance.now();
    holos(...args);
    return performance.now() - started;
  };
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(root, 'empty.qcow2'), '16M']);
  writeFileSync(
    join(root, 'holos.yaml'),
    `name: bench\nservices:\n  app:\n    image: ./empty.qcow2\n    replicas: ${instances}\n    vm: { memory_mb: 128, extra_args: [-S] }\n    stop_grace_period: 1s\n`,
  );
  execFileSync('ip', ['netns', 'add', ns]);
  execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
  execFileSync('ip', ['netns', 'exec', ns, 'ip', 'route', 'add', '224.0.0.0/4', 'dev', 'lo']);
  return {
    root,
    stateDir,
    timed,
    close() {
      try {
        holos('down');
      } catch (error) {
        console.error(`${label}: down failed: ${(error as Error).message}`);
      }
      execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
      rmSync(root, { recursive: true, force: true });
    },
  };
}

const stacks = [
  stack(resolve(import.meta.dirname, '..'), 'this'),
  ...(baseline ? [stack(baseline, 'base')] : []),
];
try {
  const upMs = stacks.map((s) => s.timed('up'));

  // In process, this checkout: what every verb and every watch pass pays before it acts.
  const [mine] = stacks;
  const session = await openProject(mine!.stateDir, { cwd: mine!.root });
  const inProcess: number[] = [];
  for (let i = 0; i < 10; i++) {
    const started = performance.now();
    const { plan } = await planSession(session, targetsFor('plan', ['app']));
    inProcess.push(performance.now() - started);
    if (plan.actions.length !== 0) throw new Error(`not converged: ${plan.actions.length} actions`);
  }

  // The whole commands, as a user runs them (node start-up, load, resolve, observe, plan, print;
  // for up also the lock, the record and the status table), the checkouts in turn.
  const whole = (verb: string) => {
    const samples = stacks.map((): number[] => []);
    const ratios: number[] = [];
    for (let i = 0; i < runs; i++) {
      const pair = stacks.map((s) => s.timed(verb));
      pair.forEach((ms, c) => samples[c]!.push(ms));
      if (pair.length === 2) ratios.push(pair[0]! / pair[1]!);
    }
    const figures = samples.map((s) => `${median(s).toFixed(0)} ms`).join(' vs ');
    return ratios.length > 0 ? `${figures} (ratio ${median(ratios).toFixed(2)})` : figures;
  };
  console.log(
    `instances: ${instances} running (held with -S)${baseline ? `; this checkout vs ${baseline}` : ''}`,
  );
  console.log(
    `holos up (create ${instances}):              ${upMs.map((ms) => `${(ms / 1000).toFixed(2)} s`).join(' vs ')}`,
  );
  console.log(
    `observe + plan, in process (median of 10): ${median(inProcess).toFixed(0)} ms (${(median(inProcess) / instances).toFixed(1)} ms per instance)`,
  );
  console.log(`holos plan, whole command (median of ${runs}):   ${whole('plan')}`);
  console.log(`holos up, no-op, whole command (median of ${runs}): ${whole('up')}`);
} finally {
  for (const s of stacks) s.close();
}
