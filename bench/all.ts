// Every figure of issue #21 in one run, each beside its baseline: cold start per verb against
// `node -e 0`; no-op `plan` and `up` at 10, 50 and 200 instances; `down` of N against the
// `down` of one (a single stop); `up` of N against a shell script doing the same QEMU work; the
// peak memory of `up` and `watch`. Given a baseline checkout (built), the benches that take one
// run it paired with this checkout, A B A B …, and print the ratios.
//
// It runs the benches one after another, each as its own process, and prints the command line
// before each, so that any figure can be reproduced alone. Root (network namespaces); about ten
// minutes on a 2-core host, longer with a baseline.
//
//   node --import tsx bench/all.ts [baseline-checkout]

import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';

const here = resolve(import.meta.dirname, '..');
const baseline = process.argv[2] ? resolve(process.argv[2]) : undefined;
const withBaseline = (...checkouts: string[]) => (baseline ? [baseline, ...checkouts] : checkouts);

const benches: string[][] = [
  ['startup.ts', '15', ...withBaseline('.')],
  ...['10', '50', '200'].map((n) => ['observe-plan.ts', n, '5', ...(baseline ? [baseline] : [])]),
  ['down.ts', '1,10,50', '3', ...withBaseline('.')],
  ['up.ts', '10', '3'],
  ['up.ts', '50', '3'],
];

for (const [script, ...args] of benches) {
  const argv = ['--import', 'tsx', `bench/${script}`, ...args];
  console.log(`\n$ node ${argv.join(' ')}`);
  execFileSync(process.execPath, argv, { cwd: here, stdio: 'inherit' });
}
