// How long a verb takes as a whole command, start-up included, on a project without VMs and
// an empty state dir: the cost of node, module loading and the verb's own work. Given several
// checkouts (each built), it runs them in turn, A B A B …, so a drifting machine moves every
// column alike; each further checkout gets the median of its paired ratios to the first, the
// figure to keep on a busy machine. "÷ node" is each median over that of a bare `node -e 0`.
//
//   node --import tsx bench/startup.ts [runs] [checkout …]     (default: 15 runs, this checkout)

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

const runs = Number(process.argv[2] ?? 15);
const checkouts = process.argv.slice(3).map((dir) => resolve(dir));
if (checkouts.length === 0) checkouts.push(resolve(import.meta.dirname, '..'));

const root = mkdtempSync(join(tmpdir(), 'holos-startup-'));
const stateDir = join(root, 'state');
execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(root, 'base.qcow2'), '16M']);
writeFileSync(
  join(root, 'holos.yaml'),
  'name: startup\nservices:\n  db:\n    image: ./base.qcow2\n  web:\n    image: ./base.qcow2\n    replicas: 3\n    depends_on: [db]\n',
);

const verbs: [string, string[]][] = [
  ['node -e 0', []],
  ['--version', ['--version']],
  ['validate', ['validate']],
  ['config', ['config']],
  ['ps', ['ps']],
  ['plan', ['plan']],
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const time = (args: string[]) => {
  const started = performance.now();
  execFileSync(process.execPath, args, {
    cwd: root,
    env: { ...process.env, HOLOS_STATE_DIR: stateDir },
    stdio: 'ignore',
  });
  return performance.now() - started;
};
const column = (text: string, width: number) => text.padStart(width);

try {
  const pairs = checkouts.slice(1).map((_, c) => ` ${c + 2}÷1`.padStart(6));
  console.log(`median of ${runs} runs, ms (${checkouts.map((dir, c) => `${c + 1}: ${dir}`).join(', ')})`);
  console.log(
    `${'verb'.padEnd(10)}${checkouts.map((_, c) => column(`${c + 1}`, 7)).join('')}` +
      `${checkouts.map((_, c) => column(`${c + 1}÷node`, 8)).join('')}${pairs.join('')}`,
  );
  let bare = NaN;
  for (const [name, args] of verbs) {
    const samples = checkouts.map((): number[] => []);
    for (let i = 0; i < runs; i++)
      checkouts.forEach((dir, c) =>
        samples[c]!.push(time(name === 'node -e 0' ? ['-e', '0'] : [join(dir, 'dist', 'cli.js'), ...args])),
      );
    const medians = samples.map(median);
    if (name === 'node -e 0') bare = median(samples.flat());
    const ratios = samples.slice(1).map((s) => median(s.map((ms, i) => ms / samples[0]![i]!)));
    console.log(
      name.padEnd(10) +
        medians.map((ms) => column(ms.toFixed(0), 7)).join('') +
        medians.map((ms) => column((ms / bare).toFixed(2), 8)).join('') +
        ratios.map((r) => column(r.toFixed(2), 6)).join(''),
    );
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
