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
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { planSession } from '../src/reconcile/converge.js';
import { targetsFor } from '../src/reconcile/targets.js';
import { openProject } from '../src/session.js';
import { heldStack, median } from './support/held.js';

const instances = Number(process.argv[2] ?? 50);
/** Runs of each whole command (the median is printed). */
const runs = Number(process.argv[3] ?? 5);
const baseline = process.argv[4] && resolve(process.argv[4]);

const stacks = [
  heldStack({ checkout: resolve(import.meta.dirname, '..'), instances, label: 'this' }),
  ...(baseline ? [heldStack({ checkout: baseline, instances, label: 'base' })] : []),
];
/** A bare node start, timed in the same turns: what no command can go below. */
const bareNode = () => {
  const started = performance.now();
  execFileSync(process.execPath, ['-e', '0']);
  return performance.now() - started;
};
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
    const overNode: number[] = [];
    for (let i = 0; i < runs; i++) {
      const pair = stacks.map((s) => s.timed(verb));
      const node = bareNode();
      pair.forEach((ms, c) => samples[c]!.push(ms));
      if (pair.length === 2) ratios.push(pair[0]! / pair[1]!);
      overNode.push(pair[0]! / node);
    }
    const figures = samples.map((s) => `${median(s).toFixed(0)} ms`).join(' vs ');
    const ofNode = `${median(overNode).toFixed(1)}× node -e 0`;
    return ratios.length > 0
      ? `${figures} (ratio ${median(ratios).toFixed(2)}; ${ofNode})`
      : `${figures} (${ofNode})`;
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
