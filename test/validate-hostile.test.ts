import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { validateComposeFile } from '../src/compose/load.js';
import { maxMessageLength } from '../src/compose/issues.js';
import { defaultLimits, type Limits } from '../src/compose/source.js';
import { composeDir } from './support/compose.js';

// Each bound validate puts on a hostile file, and each rule its messages keep: one line per
// problem, naming file:line:col and what to do, with nothing raw from the file on the terminal.

const head = 'services:\n  web:\n    image: ./base.qcow2\n';
const unprintable = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

/** The problems validate finds in `content`, each without the file name in front. */
function problems(content: string | Buffer, limits?: Partial<Limits>): string[] {
  const file = join(composeDir(''), 'holos.yaml');
  writeFileSync(file, content);
  const result = validateComposeFile(file, { limits });
  assert.equal(result.ok, false, 'the file was accepted');
  if (result.ok) return [];
  for (const line of result.problems) {
    assert.ok(line.startsWith(`${file}:`), line);
    assert.doesNotMatch(line, unprintable);
  }
  return result.problems.map((line) => line.slice(file.length + 1));
}

/** Checks that `content` is a valid compose file. */
function accepted(content: string): void {
  const result = validateComposeFile(join(composeDir(content), 'holos.yaml'));
  assert.ok(result.ok, result.ok ? '' : result.problems.join('\n'));
}

/** A single problem, which must match `pattern`. */
function onlyProblem(content: string | Buffer, pattern: RegExp, limits?: Partial<Limits>): string {
  const found = problems(content, limits);
  assert.equal(found.length, 1, found.join('\n'));
  assert.match(found[0]!, pattern);
  return found[0]!;
}

test('a file over maxBytes is refused before it is parsed', () => {
  const pad = (bytes: number) => `${head}x-pad: "${'a'.repeat(bytes - head.length - 10)}"\n`;
  assert.equal(Buffer.byteLength(pad(defaultLimits.maxBytes)), defaultLimits.maxBytes);
  accepted(pad(defaultLimits.maxBytes));
  onlyProblem(
    pad(defaultLimits.maxBytes + 1),
    /^ the file is larger than 1048576 bytes, the most a compose file may have; is this the right file\?$/,
  );
});

test('bytes that are not UTF-8 are refused with their offset and line:col', () => {
  const bytes = Buffer.concat([Buffer.from(`${head}    x-a: ab`), Buffer.from([0xff]), Buffer.from('\n')]);
  onlyProblem(bytes, /^4:12: byte 0xff at offset 52 is not UTF-8; save the file as UTF-8$/);
  // A replacement character the file spells out (EF BF BD) is UTF-8, and counts three bytes.
  const spelled = Buffer.concat([Buffer.from('x-a: \ufffd\ufffd'), Buffer.from([0xc3, 0x28])]);
  onlyProblem(spelled, /^1:8: byte 0xc3 at offset 11 is not UTF-8/);
  // A UTF-16 file, as some editors save it.
  onlyProblem(Buffer.from('\ufeffservices: {}', 'utf16le'), /^1:1: byte 0xff at offset 0 is not UTF-8/);
});

test('deep nesting gives the depth message, never a stack overflow', () => {
  const depth = /^\d+:\d+: mappings and lists nested more than 64 deep; a compose file needs far fewer/;
  onlyProblem('['.repeat(10_000), depth);
  onlyProblem(`${'{a: '.repeat(10_000)}1${'}'.repeat(10_000)}`, depth);
  // The yaml parser closes blocks by recursion: deep blocks and then a line at the margin.
  onlyProblem(`${'- '.repeat(10_000)}x\nz: 1\n`, depth);
  const blocks = (levels: number) =>
    `${Array.from({ length: levels }, (_, i) => `${' '.repeat(i)}k:`).join('\n')}\nz: 1\n`;
  onlyProblem(blocks(1_000), depth);
  onlyProblem(blocks(65), depth);
  assert.doesNotMatch(problems(blocks(64)).join('\n'), depth);
  onlyProblem(blocks(10_000), depth, { maxBytes: 2 ** 27 });
  // Below the limit, depth is fine.
  accepted(`${head}    x-deep: ${'['.repeat(60)}${']'.repeat(60)}\n`);
});

test('depth counts aliases expanded: an alias of a deep anchor inside a deep list', () => {
  const nest = (inner: string) => `${'['.repeat(40)}${inner}${']'.repeat(40)}`;
  const text = `x-a: &a ${nest('1')}\nx-b: ${nest('*a')}\n${head}`;
  assert.match(onlyProblem(text, /nested more than 64 deep/), /^2:\d+:/);
});

test('too many tokens stop the parser where the limit is passed', () => {
  const keys = Array.from({ length: 40_000 }, (_, i) => `  k${i}: 1\n`).join('');
  onlyProblem(
    `${head}x-keys:\n${keys}`,
    /^33335:9: more than 100000 YAML tokens \(keys, values and punctuation\); a compose file is far smaller: is this the right file\?$/,
  );
  // Punctuation counts: a flow list of empty entries is as costly to parse as one of values.
  onlyProblem(`[${','.repeat(200_000)}]`, /^1:\d+: more than 100000 YAML tokens/);
});

test('alias bombs and merge-key chains are refused by their expanded size', () => {
  let laughs = 'x-a: &a [x, x, x, x, x, x, x, x, x, x]\n';
  for (const [from, to] of ['ab', 'bc', 'cd', 'de', 'ef', 'fg'])
    laughs += `x-${to}: &${to} [${`*${from}, `.repeat(9)}*${from}]\n`;
  onlyProblem(
    laughs + head,
    /^5:38: aliases expand the file past 100000 keys and values; alias smaller anchors, or fewer times$/,
  );
  // Each merge recomputes its source, which the yaml package's alias count does not see.
  let merges = 'x-m0: &m0 {x: 1}\n';
  for (let i = 1; i <= 30; i++) merges += `x-m${i}: &m${i} {<<: [*m${i - 1}, *m${i - 1}]}\n`;
  onlyProblem(merges + head, /^\d+:\d+: aliases expand the file past 100000 keys and values/);
});

test('more anchors and aliases than maxAliases are refused', () => {
  const anchors = Array.from({ length: 1_001 }, (_, i) => `  - &a${i} ${i}\n`).join('');
  onlyProblem(
    `${head}x-list:\n${anchors}`,
    /^1005:12: more than 1000 anchors and aliases; a compose file needs a few$/,
  );
});

test('aliases: unknown, or inside the node they name', () => {
  onlyProblem(
    `services: *nope\n`,
    /^1:11: alias \*nope has no anchor &nope before it; define the anchor first$/,
  );
  onlyProblem(`x-a: &a [*a]\n${head}`, /^1:10: alias \*a is inside the node &a it refers to; move it out$/);
});

test('merge keys must merge mappings; a list of them, or an alias of such a list, is fine', () => {
  onlyProblem(
    `${head}    <<: 1\n`,
    /^4:9: a merge key \(<<\) takes a mapping, an alias of one, or a list of them$/,
  );
  const file = join(
    composeDir(`x-a: &a {replicas: 2}\nx-l: &l [*a]\nservices:\n  web: {<<: *l, image: ./base.qcow2}\n`),
    'holos.yaml',
  );
  const result = validateComposeFile(file);
  assert.ok(result.ok, result.ok ? '' : result.problems.join('\n'));
  assert.equal(result.loaded.compose.services.web!.replicas, 2);
});

test('duplicate and non-scalar keys', () => {
  onlyProblem(
    `${head}    image: ./other.qcow2\n`,
    /^4:5: duplicate key "image" \(first on line 3\); each key may appear once in a mapping$/,
  );
  onlyProblem(
    `services:\n  ? [a]\n  : 1\n`,
    /^2:5: a key must be a plain name, not a list, mapping or alias$/,
  );
});

test('one extra indent is one line with its position, not a cascade', () => {
  const valid = readFileSync(
    join(import.meta.dirname, '..', 'fixtures', 'compose', 'valid', 'edge-cases.yaml'),
    'utf8',
  );
  const lines = valid.split('\n');
  lines[2] = ` ${lines[2]}`;
  onlyProblem(lines.join('\n'), /^4:1: /);
  onlyProblem(`${head}     replicas: 2\n`, /^3:12: /);
});

test('control and bidi characters in keys and values are escaped', () => {
  const found = problems(
    'services:\n  "ev\\x1b[31mil\\u202e":\n    image: "\\x1b]0;title\\x07\\u2028\\x85"\n  web:\n    image: "a\\tb\\ud800"\n',
  );
  assert.deepEqual(
    found.map((line) => line.split(': ').slice(0, 2).join(': ')),
    ['2:3: services."ev\\x1b[31mil\\u202e"', '5:12: services.web.image'],
  );
  assert.match(found[1]!, /unknown image "a\\tb\\ud800"/);
  // A key that is not a plain name is quoted in the path: its spaces cannot pass for the message.
  onlyProblem(
    `${head}  " my web":\n    image: ./base.qcow2\n`,
    /^4:3: services\." my web": a service name must/,
  );
});

test('long values are cut to a prefix and their length; no line is long', () => {
  const value = 'a'.repeat(500_000);
  const line = onlyProblem(
    `services:\n  web:\n    image: ${value}\n`,
    /^3:12: services\.web\.image: unknown image "a{60}…" \(500000 characters\); use /,
  );
  assert.ok(line.length < 300, `${line.length} characters`);
  // A 5 MiB value, with the size limit lifted.
  const huge = onlyProblem(
    `services:\n  web:\n    image: ${'a'.repeat(5 * 2 ** 20)}\n`,
    /\(5242880 characters\)/,
    {
      maxBytes: 2 ** 24,
    },
  );
  assert.ok(huge.length < 300, `${huge.length} characters`);
  // Spaces do not hide a long value from the cut.
  for (const found of problems(
    `${head}    depends_on: ["${'b '.repeat(5_000)}"]\n    x-${'k'.repeat(9_000)}: 1\n    ${'k'.repeat(9_000)}: 1\n`,
  ))
    assert.ok(found.length <= maxMessageLength + 20, found);
});

test('huge numbers and durations are refused, not turned into Infinity', () => {
  assert.deepEqual(
    problems(`${head}    replicas: 1${'0'.repeat(400)}\n    stop_grace_period: 1${'0'.repeat(400)}h\n`),
    [
      '4:15: services.web.replicas: expected a finite number, got Infinity',
      `5:24: services.web.stop_grace_period: duration "1${'0'.repeat(59)}…" (402 characters) is too long; the most is 87600h (10 years)`,
    ],
  );
});

test('time is linear: twice the keys, twice the problems, the same positions (timed in bench/)', (t) => {
  // Speed is never asserted here (bench/validate-scaling.ts times it). These are the paths that
  // were quadratic: a key lookup per problem, and the yaml package's duplicate-key check.
  const lifted = { maxTokens: 10 ** 6, maxNodes: 10 ** 6 };
  for (const count of [10_000, 20_000]) {
    const started = performance.now();
    const keys = Array.from({ length: count }, (_, i) => `    k${i}: 1\n`).join('');
    const unknown = problems(head + keys, lifted);
    assert.equal(unknown.length, count);
    assert.match(unknown[0]!, /^4:5: services\.web\.k0: unknown key "k0"; /);
    assert.match(unknown.at(-1)!, new RegExp(`^${count + 3}:5: services\\.web\\.k${count - 1}: unknown key`));
    const duplicates = problems(`${head}    x-keys:\n${keys.replaceAll('    ', '      ').repeat(2)}`, lifted);
    assert.equal(duplicates.length, count);
    assert.match(
      duplicates.at(-1)!,
      new RegExp(`^${2 * count + 4}:7: duplicate key "k${count - 1}" \\(first on line ${count + 4}\\)`),
    );
    t.diagnostic(`${count} keys: ${Math.round(performance.now() - started)} ms`);
  }
});
