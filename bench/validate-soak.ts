// Hostile compose files, and a soak that feeds 10,000 of them to validate (issue #11, item 8).
// The generators are shared with test/validate-property.test.ts, which runs a few hundred.
//
// Each case runs in a worker process, so that a V8 out-of-memory abort (exit 134) or a hang is
// seen as a crash of that case instead of ending the soak; every 20th case also runs through
// the built binary (`node dist/cli.js validate -f FILE`), as a user would meet it.
//
//   npm run build && node --import tsx bench/validate-soak.ts [cases=10000] [seed=1]

import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { parse, stringify } from 'yaml';
import { maxMessageLength } from '../src/compose/issues.js';
import { validateComposeFile } from '../src/compose/load.js';

const validDir = join(import.meta.dirname, '..', 'fixtures', 'compose', 'valid');
const fixtureNames = readdirSync(validDir).filter((f) => f.endsWith('.yaml'));
const fixtureTexts = fixtureNames.map((f) => readFileSync(join(validDir, f), 'utf8'));
const fixtureTrees = fixtureTexts.map((text) => parse(text, { merge: true }) as unknown);

/** A directory for cases, holding the files the fixtures name (images, a Dockerfile). */
export function caseDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  for (const f of ['base.qcow2', 'postgres-cloud.qcow2', 'Dockerfile'])
    copyFileSync(join(validDir, f), join(dir, f));
  return dir;
}

// Characters that must never reach a terminal raw: C0 and C1 controls, DEL, bidi overrides and
// isolates, zero-width and BOM, line separators, a lone surrogate.
const hostileChars = [
  ...['\x00', '\x07', '\b', '\t', '\n', '\v', '\f', '\r', '\x1b', '\x7f', '\x85', '\x9b'],
  ...['\u061c', '\u200b', '\u200e', '\u200f', '\u202a', '\u202e', '\u2066', '\u2069', '\ufeff'],
  ...['\u2028', '\u2029', '\ud800', '\udfff', '\u{e0001}'],
];
const hostileString = fc.string({
  unit: fc.oneof(fc.constantFrom(...hostileChars), fc.string({ minLength: 1, maxLength: 1 })),
  maxLength: 12,
});
const longString = fc
  .tuple(fc.integer({ min: 100, max: 20_000 }), fc.constantFrom('a', 'b ', '\x1b', '😀', '\u202e'))
  .map(([length, unit]) => unit.repeat(length));
const hugeNumberText = fc.constantFrom(
  `1${'0'.repeat(400)}`,
  `${'9'.repeat(400)}h`,
  `1${'0'.repeat(400)}s`,
  '1e400',
  '.inf',
  '-.inf',
  '.nan',
  '99999999999999999999P',
  '87601h',
  '0x7fffffffffffffffffff',
);

/** A value nested `depth` lists deep: the tree mutations reach past the depth limit with it. */
const deepValue = fc.integer({ min: 1, max: 120 }).map((depth) => {
  let value: unknown = 'x';
  for (let i = 0; i < depth; i++) value = i % 2 ? [value] : { k: value };
  return value;
});

const anyValue = fc.oneof(
  fc.string(),
  fc.integer({ min: -100000, max: 100000 }),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom(
    '8080:80',
    '0:0',
    '../x:/y:ro',
    '1m',
    'x-a',
    '01:00.0',
    '9999999999999999999',
    '-1',
    'ubuntu:noble',
  ),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }),
  hostileString,
  longString,
  hugeNumberText,
  hugeNumberText.map(Number),
  deepValue,
  fc.dictionary(hostileString, hostileString, { maxKeys: 3 }),
);
const anyKey = fc.oneof(
  fc.constantFrom(
    'image',
    'portz',
    'x-ext',
    'replicas',
    'depends_on',
    'vm',
    'healthcheck',
    'services',
    'volumes',
  ),
  fc.constantFrom('stop_grace_period', 'disk_size', 'interval', 'size'),
  hostileString,
  longString,
);

type Tree = unknown;

/** All paths to nodes inside a tree. */
function paths(tree: Tree, prefix: (string | number)[] = []): (string | number)[][] {
  if (tree === null || typeof tree !== 'object') return [prefix];
  const entries = Array.isArray(tree) ? tree.map((v, i) => [i, v] as const) : Object.entries(tree);
  return [prefix, ...entries.flatMap(([k, v]) => paths(v, [...prefix, k]))];
}

/** `tree` with the node at `path` replaced (kind 0), deleted (1) or given a new key (2). */
function mutate(tree: Tree, path: (string | number)[], kind: number, value: unknown, key: string): Tree {
  if (path.length === 0) {
    if (kind === 0) return value;
    if (tree && typeof tree === 'object' && !Array.isArray(tree)) return { ...tree, [key]: value };
    return value;
  }
  const [head, ...rest] = path;
  const copy = (Array.isArray(tree) ? [...(tree as unknown[])] : { ...(tree as object) }) as Record<
    string | number,
    unknown
  >;
  if (rest.length === 0 && kind === 1) delete copy[head!];
  else copy[head!] = mutate(copy[head!], rest, kind, value, key);
  return copy;
}

/** A valid fixture with one node replaced, deleted or added, written back as YAML. */
export const mutatedFixture = fc
  .tuple(fc.nat(fixtureTrees.length - 1), fc.nat(), fc.nat(2), anyValue, anyKey)
  .map(([which, pick, kind, value, key]) => {
    const tree = fixtureTrees[which];
    const all = paths(tree);
    return Buffer.from(stringify(mutate(tree, all[pick % all.length]!, kind, value, key)));
  });

/** One edit to the text of a file: the shapes fuzzing found crashes, hangs and bad messages with. */
const textEdit: fc.Arbitrary<(text: Buffer) => Buffer> = fc.oneof(
  // Bytes anywhere: invalid UTF-8 (a lone 0xff, a cut sequence, an overlong), NUL, controls.
  fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 4 })).map(
    ([at, bytes]) =>
      (text: Buffer) =>
        Buffer.concat([
          text.subarray(0, at % (text.length + 1)),
          bytes,
          text.subarray(at % (text.length + 1)),
        ]),
  ),
  // Odd indentation: a line moved by spaces or tabs, or a line deleted or doubled.
  fc
    .tuple(fc.nat(), fc.constantFrom(' ', '  ', '   ', '\t', ' \t', '\t\t'), fc.nat(2))
    .map(([at, indent, kind]) => (text: Buffer) => {
      const lines = text.toString('latin1').split('\n');
      const i = at % lines.length;
      if (kind === 0) lines[i] = indent + lines[i]!;
      else if (kind === 1) lines.splice(i, 1);
      else lines.splice(i, 0, lines[i]!);
      return Buffer.from(lines.join('\n'), 'latin1');
    }),
  // Deep nesting: flow brackets, flow mappings, block mappings or compact lists.
  fc.tuple(fc.integer({ min: 30, max: 12_000 }), fc.nat(3)).map(([depth, kind]) => (text: Buffer) => {
    const deep = [
      () => `x-deep: ${'['.repeat(depth)}`,
      () => `x-deep: ${'{a: '.repeat(depth)}1${'}'.repeat(depth)}`,
      () =>
        `x-deep:\n${Array.from({ length: Math.min(depth, 1400) }, (_, i) => `${' '.repeat(i + 1)}k:`).join('\n')}`,
      () => `x-deep:\n ${'- '.repeat(depth)}x`,
    ][kind]!();
    return Buffer.concat([text, Buffer.from(`\n${deep}\nx-after: 1\n`)]);
  }),
  // Many keys, in a block mapping or a flow one, unique or not.
  fc
    .tuple(fc.integer({ min: 100, max: 45_000 }), fc.boolean(), fc.boolean())
    .map(([count, flow, unique]) => (text: Buffer) => {
      const key = (i: number) => `k${unique ? i : i % 7}`;
      const keys = flow
        ? `{${Array.from({ length: count }, (_, i) => `${key(i)}: ${i}`).join(', ')}}`
        : `\n${Array.from({ length: count }, (_, i) => `  ${key(i)}: ${i}`).join('\n')}`;
      return Buffer.concat([text, Buffer.from(`\nx-many: ${keys}\n`)]);
    }),
  // A long or hostile value where a message quotes it (an image, a port, a duration, a key).
  fc
    .tuple(fc.oneof(longString, hostileString, hugeNumberText), fc.nat(3))
    .map(([value, kind]) => (text: Buffer) => {
      const quoted = JSON.stringify(value);
      const service = [
        `  hostile:\n    image: ${quoted}\n`,
        `  hostile:\n    image: ./base.qcow2\n    ports: [${quoted}]\n`,
        `  hostile:\n    image: ./base.qcow2\n    stop_grace_period: ${value.includes('\n') ? quoted : value}\n`,
        `  ${quoted}:\n    image: ./base.qcow2\n`,
      ][kind]!;
      return Buffer.from(text.toString('latin1').replace(/^services:\n/m, `services:\n${service}`), 'latin1');
    }),
  // Alias bombs and merge-key chains.
  fc
    .tuple(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 12 }), fc.boolean())
    .map(([levels, fanOut, merge]) => (text: Buffer) => {
      let bomb = 'x-l0: &l0 {a: 1, b: [1, 2, 3]}\n';
      for (let i = 1; i <= levels; i++) {
        const refs = Array.from({ length: fanOut }, () => `*l${i - 1}`).join(', ');
        bomb += merge ? `x-l${i}: &l${i} {<<: [${refs}], n${i}: 1}\n` : `x-l${i}: &l${i} [${refs}]\n`;
      }
      return Buffer.concat([Buffer.from(bomb), text]);
    }),
);

/** A valid fixture's text with one to three edits. */
export const editedFixture = fc
  .tuple(fc.nat(fixtureTexts.length - 1), fc.array(textEdit, { minLength: 1, maxLength: 3 }))
  .map(([which, edits]) =>
    edits.reduce<Buffer>((text, edit) => edit(text), Buffer.from(fixtureTexts[which]!)),
  );

/** Any text at all, short. */
export const randomText = fc.string({ maxLength: 200, unit: 'binary' }).map((text) => Buffer.from(text));

export const hostileFile = fc.oneof(mutatedFixture, editedFixture, randomText);

const unprintable = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;
/** A position and the separator: `12:3: `, or `: ` for a problem with the whole file. */
const afterName = /^(?::\d+:\d+)?: \S/;
/** Room for the position in front of the longest message. */
export const maxLineAfterName = maxMessageLength + 20;

/** What is wrong with validate's lines for `name`: the rules every problem line keeps. */
export function lineViolations(name: string, lines: readonly string[]): string[] {
  const violations: string[] = [];
  if (lines.length === 0) violations.push('invalid, with no problem');
  if (new Set(lines).size !== lines.length) violations.push('a line printed twice');
  for (const line of lines) {
    const shown = JSON.stringify(line.slice(0, 200));
    if (!line.startsWith(name) || !afterName.test(line.slice(name.length)))
      violations.push(`no file:line:col: ${shown}`);
    if (unprintable.test(line)) violations.push(`a raw control character: ${shown}`);
    if (line.length - name.length > maxLineAfterName) violations.push(`${line.length} characters: ${shown}`);
    if (/internal error|\n\s+at /.test(line)) violations.push(`an internal error: ${shown}`);
  }
  return violations;
}

/** The outcome of one case in a worker. */
interface CaseResult {
  index: number;
  ms: number;
  valid: boolean;
  lines: number;
  longestLine: number;
  firstProblem?: string;
  violations: string[];
  binary?: { ms: number; exit: number | string; violations: string[] };
}

const binarySample = 20;
const cli = join(import.meta.dirname, '..', 'dist', 'cli.js');

/** The built binary on one file: its exit status and the checks of what it printed. */
function runBinary(file: string): CaseResult['binary'] {
  const started = performance.now();
  let exit: number | string = 0;
  let stderr = '';
  try {
    execFileSync(process.execPath, [cli, 'validate', '-f', file], {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 60_000,
      maxBuffer: 2 ** 26,
    });
  } catch (error) {
    const failed = error as { status: number | null; signal: string | null; stderr: Buffer };
    exit = failed.status ?? failed.signal ?? 'unknown';
    stderr = failed.stderr.toString();
  }
  const lines = stderr.split('\n').filter((line) => line !== '');
  const violations =
    exit === 0 ? [] : exit === 1 ? lineViolations(file, lines) : [`exit ${exit}: ${stderr.slice(0, 300)}`];
  return { ms: performance.now() - started, exit, violations };
}

function runCase(dir: string, seed: number, index: number): CaseResult {
  const [content] = fc.sample(hostileFile, { seed: seed + index, numRuns: 1 });
  const file = join(dir, `case-${index}.yaml`);
  writeFileSync(file, content!);
  const started = performance.now();
  let result: CaseResult;
  try {
    const validation = validateComposeFile(file);
    const lines = validation.ok ? [] : validation.problems;
    result = {
      index,
      ms: performance.now() - started,
      valid: validation.ok,
      lines: lines.length,
      longestLine: Math.max(0, ...lines.map((line) => line.length - file.length)),
      firstProblem: lines[0]?.slice(file.length),
      violations: validation.ok ? [] : lineViolations(file, lines),
    };
  } catch (error) {
    const message = (error as Error).message;
    const user = (error as Error).name === 'UserError' || (error as Error).name === 'ComposeProblems';
    result = {
      index,
      ms: performance.now() - started,
      valid: false,
      lines: 1,
      longestLine: message.length,
      violations: user ? [] : [`threw ${String(error)}`],
    };
  }
  if (index % binarySample === 0) result.binary = runBinary(file);
  rmSync(file);
  return result;
}

/** The limit or kind of problem a first line names, for the summary. */
function kindOf(problem: string | undefined): string {
  if (problem === undefined) return 'valid';
  const kinds: [RegExp, string][] = [
    [/larger than \d+ bytes/, 'size limit'],
    [/is not UTF-8/, 'not UTF-8'],
    [/YAML tokens/, 'token limit'],
    [/nested more than/, 'depth limit'],
    [/aliases expand|anchors and aliases/, 'alias limit'],
    [/keys and values; a compose/, 'node limit'],
    [/duplicate key/, 'duplicate key'],
  ];
  return kinds.find(([pattern]) => pattern.test(problem))?.[1] ?? 'other problem';
}

async function soak(cases: number, seed: number): Promise<void> {
  const dir = caseDir('holos-soak-');
  const workers = 2;
  let next = 0;
  const results: CaseResult[] = [];
  const crashes: string[] = [];
  const started = performance.now();

  const startWorker = (): Promise<void> =>
    new Promise((done) => {
      let current = -1;
      let timer: NodeJS.Timeout | undefined;
      const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--worker', dir, String(seed)], {
        execArgv: ['--import', 'tsx'],
      });
      const send = () => {
        if (next >= cases) {
          child.kill();
          return;
        }
        current = next++;
        timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
        child.send(current);
      };
      child.on('message', (result: CaseResult) => {
        clearTimeout(timer);
        results.push(result);
        if (results.length % 1000 === 0)
          console.log(`${results.length} cases, ${Math.round((performance.now() - started) / 1000)} s`);
        current = -1;
        send();
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        if (current >= 0) {
          crashes.push(`case ${current} (seed ${seed + current}): worker exit ${code ?? signal}`);
          void startWorker().then(done);
        } else done();
      });
      child.once('spawn', send);
    });
  await Promise.all(Array.from({ length: workers }, startWorker));
  rmSync(dir, { recursive: true, force: true });

  const kinds = new Map<string, number>();
  for (const r of results) kinds.set(kindOf(r.firstProblem), (kinds.get(kindOf(r.firstProblem)) ?? 0) + 1);
  const slowest = results.reduce((a, b) => (b.ms > a.ms ? b : a));
  const longest = results.reduce((a, b) => (b.longestLine > a.longestLine ? b : a));
  const binary = results.filter((r) => r.binary);
  const slowestBinary = binary.reduce((a, b) => (b.binary!.ms > a.binary!.ms ? b : a));
  const violations = results.flatMap((r) =>
    [...r.violations, ...(r.binary?.violations ?? [])].map((v) => `case ${r.index}: ${v}`),
  );
  console.log(
    `\n${results.length} cases (seed ${seed}) in ${Math.round((performance.now() - started) / 1000)} s`,
  );
  console.log(`outcomes: ${[...kinds].map(([kind, n]) => `${kind} ${n}`).join(', ')}`);
  console.log(`crashes (worker died: OOM abort, signal, hang): ${crashes.length}`);
  for (const crash of crashes) console.log(`  ${crash}`);
  console.log(`rule violations: ${violations.length}`);
  for (const v of violations.slice(0, 20)) console.log(`  ${v}`);
  console.log(
    `max time in process: ${Math.round(slowest.ms)} ms (case ${slowest.index}: ${kindOf(slowest.firstProblem)})`,
  );
  console.log(`max line length after the file name: ${longest.longestLine} (case ${longest.index})`);
  console.log(
    `binary: ${binary.length} cases, exits ${[...new Set(binary.map((r) => r.binary!.exit))].join('/')}, max ${Math.round(slowestBinary.binary!.ms)} ms (case ${slowestBinary.index})`,
  );
  if (crashes.length + violations.length > 0) process.exitCode = 1;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv[2] === '--worker') {
    const [dir, seed] = [process.argv[3]!, Number(process.argv[4])];
    process.on('message', (index: number) => process.send!(runCase(dir, seed, index)));
  } else await soak(Number(process.argv[2] ?? 10_000), Number(process.argv[3] ?? 1));
}
