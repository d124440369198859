// How long `holos up` (creating N instances) and `holos down` (stopping and removing them) take,
// for each N given. The VMs are real QEMU processes held before their first instruction
// (`extra_args: [-S]`), so none answers the ACPI power button: every stop waits out the whole
// `stop_grace_period` (1 s here), then SIGTERM ends QEMU. One stop is thus about 1 s, and a
// `down` of N that stops them all at once is too.
//
// Each column is a checkout (built: its dist/cli.js), optionally with environment variables for
// its holos: `path:NAME=value,NAME=value` (HOLOS_ACCEL is tcg unless a column sets it). Every checkout brings the project up in a network
// namespace and a state dir of its own, and the columns run in turn, A B A B …, so that a drifting
// machine moves them alike; the ratio is taken per pair, against the first column.
//
//   node --import tsx bench/down.ts [instances,…] [runs] [checkout[:ENV=v,…] …]   (root: namespaces)
//   node --import tsx bench/down.ts 1,10,50 3 /tmp/holos-base .   (ratios: this ÷ the baseline)

import { resolve } from 'node:path';
import { heldStack, median, seconds } from './support/held.js';

const counts = (process.argv[2] ?? '1,10,50').split(',').map(Number);
const runs = Number(process.argv[3] ?? 3);
const columns = (process.argv.length > 4 ? process.argv.slice(4) : ['.']).map((arg) => {
  const [dir, vars] = arg.split(':');
  const env = Object.fromEntries((vars ? vars.split(',') : []).map((v) => v.split('=') as [string, string]));
  return { label: arg, checkout: resolve(dir!), env };
});

console.log(`columns: ${columns.map((c) => c.label).join(' | ')}; ${runs} runs each, medians`);
for (const instances of counts) {
  const stacks = columns.map((column, i) =>
    heldStack({ checkout: column.checkout, instances, label: `down-${i}`, env: column.env, project: 'down' }),
  );
  try {
    const samples = { up: stacks.map((): number[] => []), down: stacks.map((): number[] => []) };
    const ratios = { up: stacks.map((): number[] => []), down: stacks.map((): number[] => []) };
    for (let run = 0; run < runs; run++)
      for (const verb of ['up', 'down'] as const) {
        const pair = stacks.map((s) => s.timed(verb));
        pair.forEach((ms, c) => {
          samples[verb][c]!.push(ms);
          ratios[verb][c]!.push(ms / pair[0]!);
        });
      }
    for (const verb of ['up', 'down'] as const)
      console.log(
        `${instances} instances, holos ${verb.padEnd(4)}: ${samples[verb]
          .map((s, c) => `${seconds(median(s))}${c > 0 ? ` (×${median(ratios[verb][c]!).toFixed(2)})` : ''}`)
          .join(' | ')}`,
      );
  } finally {
    for (const s of stacks) s.close();
  }
}
