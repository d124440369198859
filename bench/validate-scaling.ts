// How validate's time grows with the number of keys (issue #11, item 8: 40k keys took 13.7 s,
// 230k over a minute, because several steps were quadratic). Each shape is timed with the
// default limits, which refuse the big files early, and with the limits lifted, which shows
// the cost of every step on the whole file. Tests never assert speed; this measures it.
//
//   node --import tsx bench/validate-scaling.ts [keys ...]      (default 10000 20000 40000 230000)

import { rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateComposeFile } from '../src/compose/load.js';
import { caseDir } from './validate-soak.js';

const head = 'services:\n  web:\n    image: ./base.qcow2\n';
const lines = (count: number, line: (i: number) => string) =>
  Array.from({ length: count }, (_, i) => line(i)).join('');

/** Files of `count` keys, each shape one of the paths that was quadratic. */
const shapes: Record<string, (count: number) => string> = {
  // One problem per key: a position lookup per problem.
  'unknown keys': (count) => head + lines(count, (i) => `    key_${i}: value\n`),
  // No problem: the yaml package's duplicate-key check compared each key with all before it.
  'x- keys': (count) => `${head}x-extension:\n${lines(count, (i) => `  key_${i}: value\n`)}`,
  // One problem per key, the second half repeating the first.
  'duplicate keys': (count) =>
    `${head}x-extension:\n${lines(count, (i) => `  key_${i % Math.ceil(count / 2)}: value\n`)}`,
  // Services: one key each, checked across the file.
  services: (count) => `services:\n${lines(count, (i) => `  s${i}: { image: ./base.qcow2 }\n`)}`,
};

const lifted = { maxBytes: 2 ** 30, maxTokens: 2 ** 30, maxNodes: 2 ** 30 };
const sizes = process.argv.slice(2).map(Number);
const dir = caseDir('holos-scaling-');

/** The fastest of a few runs (one for the largest files): on a busy machine, the least disturbed. */
function time(file: string, limits: object | undefined, runs: number): { ms: number; outcome: string } {
  let best = Infinity;
  let outcome = '';
  for (let run = 0; run < runs; run++) {
    const started = performance.now();
    const result = validateComposeFile(file, { limits });
    best = Math.min(best, performance.now() - started);
    outcome = result.ok ? 'valid' : `${result.problems.length} problems`;
  }
  return { ms: Math.round(best), outcome };
}

console.log('| shape | keys | file | default limits | limits lifted |');
console.log('| --- | --- | --- | --- | --- |');
for (const [shape, make] of Object.entries(shapes))
  for (const count of sizes.length > 0 ? sizes : [10_000, 20_000, 40_000, 230_000]) {
    const file = join(dir, 'holos.yaml');
    writeFileSync(file, make(count));
    const runs = count > 50_000 ? 1 : 3;
    const bounded = time(file, undefined, runs);
    const whole = time(file, lifted, runs);
    const size = `${(statSync(file).size / 2 ** 20).toFixed(1)} MiB`;
    console.log(
      `| ${shape} | ${count} | ${size} | ${bounded.ms} ms (${bounded.outcome}) | ${whole.ms} ms (${whole.outcome}) |`,
    );
  }
rmSync(dir, { recursive: true, force: true });
