import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { parse, stringify } from 'yaml';
import { firstBootReport, renderSeed, yaml11, type SeedKeys } from '../src/cloudinit/render.js';
import { validateComposeFile } from '../src/compose/load.js';
import { resolveProject, type ResolvedProject } from '../src/compose/resolve.js';
import { parseMount } from '../src/compose/mounts.js';
import { loadText } from './support/compose.js';

// cloud-init reads the seed with PyYAML, so PyYAML is the oracle here: every document holos
// renders must come back from yaml.safe_load as the value that was written. Debian's own
// python3 and python3-yaml (scripts/install-deps.sh), as on CI, not a pyenv one.

const python = '/usr/bin/python3';

/**
 * Reads each document as cloud-init reads the seed: UTF-8 bytes, as the ISO holds them, into
 * yaml.safe_load. Types JSON cannot hold (a date, say) come back marked, to fail a comparison.
 */
const oracle = `
import base64, json, sys, yaml
marked = lambda value: {'python type': type(value).__name__, 'repr': repr(value)}
results = []
for blob in json.load(sys.stdin):
    try:
        value = yaml.safe_load(base64.b64decode(blob).decode('utf-8'))
        results.append({'json': json.dumps(value, default=marked, allow_nan=False)})
    except Exception as error:
        results.append({'error': f'{type(error).__name__}: {error}'})
json.dump(results, sys.stdout)
`;

const probe = spawnSync(python, ['-c', 'import yaml'], { encoding: 'utf8' });
const missing =
  probe.status === 0
    ? undefined
    : `PyYAML, the parser cloud-init reads the seed with, is missing: ${python} -c 'import yaml' failed ` +
      `(${(probe.error?.message ?? probe.stderr).trim()}); install python3-yaml (scripts/install-deps.sh)`;
if (missing !== undefined) console.warn(`\n*** ${missing}: the PyYAML tests are skipped ***\n`);

/** False, having skipped the test, where PyYAML is missing; on CI that is a failure instead. */
function havePyyaml(t: TestContext): boolean {
  if (missing === undefined) return true;
  if (process.env.CI === 'true') assert.fail(missing);
  t.skip(missing);
  return false;
}

interface Case {
  /** What the document is, for a failure message. */
  what: string;
  text: string;
  expected: unknown;
}

/** Asserts that PyYAML reads every case's text as its expected value, in one python process. */
function assertPyyamlReads(cases: Case[]) {
  const run = spawnSync(python, ['-c', oracle], {
    input: JSON.stringify(cases.map((c) => Buffer.from(c.text, 'utf8').toString('base64'))),
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  });
  assert.equal(run.status, 0, run.stderr);
  const results = JSON.parse(run.stdout) as ({ json: string } | { error: string })[];
  assert.equal(results.length, cases.length);
  cases.forEach(({ what, text, expected }, i) => {
    const result = results[i]!;
    const shown = `${what}, rendered as:\n${text}`;
    if ('error' in result) assert.fail(`PyYAML cannot read ${shown}\n${result.error}`);
    assert.deepEqual(JSON.parse(result.json), expected, `PyYAML reads another value from ${shown}`);
  });
}

// fast-check draws the cases up front, so that one python process reads them all; the seed in
// a failure message draws the same ones again.
const seed = Number(process.env.FC_SEED ?? Math.floor(Math.random() * 2 ** 31));
const sample = <T>(arbitrary: fc.Arbitrary<T>, numRuns: number) => fc.sample(arbitrary, { seed, numRuns });
const fromSeed = `(FC_SEED=${seed} draws these cases again)`;

/** Characters that YAML, PyYAML or a line-based reader treat specially, and pieces of implicit types. */
const awkward = fc.constantFrom(
  ...[...' \t\n\r:#-?,[]{}&*!|>\'"%@`=<~._+\\/0189eExXbonNyYT'],
  ...['\x00', '\x07', '\x1b', '\x7f', '\x80', '\x85', '\x9f', '\xa0', '\u2028', '\u2029', '\ufeff'],
  ...['\ufffe', '\uffff', '\ud800', '\udc00', 'é', '😀', '𝄞'],
  ...['---', '...', '- ', ': ', ' #', '<<', 'yes', 'off', 'null', '0x', '0b', '2001-01-01', ' 1:00:00'],
);
/** Strings of awkward pieces, and of any code point. */
const text = fc.oneof(
  fc.string({ unit: awkward, maxLength: 16 }),
  fc.string({ unit: 'binary', maxLength: 16 }),
  fc.constantFrom('=', '<<', 'no', 'On', '~', '', ' ', '0o17', '1_000', '190:20:30', '2001-1-1 1:00:00.'),
);

/** Strings PyYAML cannot read as the yaml package writes them, and ordinary ones. */
const named = {
  fixed: [
    'echo\tone',
    'del\x7f',
    'nel\x85',
    'line\u2028sep',
    '\ufeffbom',
    'x\uffff',
    'lone\ud800',
    '=',
    '<<',
    ' \n',
  ],
  'as before': ['echo one', 'no', 'make:\n\tcc -o app app.c\n', 'emoji 😀'],
};

test('strings PyYAML needs quoted are double-quoted and escaped; a tab in a literal block is fine', () => {
  assert.equal(
    yaml11(named),
    [
      'fixed:',
      '  - "echo\\tone"',
      '  - "del\\x7f"',
      '  - "nel\\x85"',
      '  - "line\\u2028sep"',
      '  - "\\ufeffbom"',
      '  - "x\\uffff"',
      '  - "lone\\ud800"',
      '  - "="',
      '  - "<<"',
      '  - "\\ \\n"',
      'as before:',
      '  - echo one',
      '  - "no"',
      '  - |',
      '    make:',
      '    \tcc -o app app.c',
      '  - emoji 😀',
      '',
    ].join('\n'),
  );
});

test('PyYAML reads those strings back as they were', (t) => {
  if (!havePyyaml(t)) return;
  assertPyyamlReads([{ what: 'the named strings', text: yaml11(named), expected: named }]);
});

test('PyYAML reads yaml11 back to the same value, for fuzzed mappings of awkward strings', (t) => {
  if (!havePyyaml(t)) return;
  const { tree } = fc.letrec((tie) => ({
    tree: fc.oneof(
      { depthSize: 'small' },
      text,
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.array(tie('tree'), { maxLength: 4 }),
      fc.dictionary(text, tie('tree'), { maxKeys: 4, noNullPrototype: true }),
    ),
  }));
  const values = sample(fc.dictionary(text, tree, { maxKeys: 5, noNullPrototype: true }), 400);
  assertPyyamlReads(
    values.map((value, i) => ({ what: `value ${i} ${fromSeed}`, text: yaml11(value), expected: value })),
  );
});

test('ordinary strings are written as the yaml package always wrote them', () => {
  // Blank lines alone are not ordinary: PyYAML reads the yaml package's block of them differently.
  const ordinary = fc
    .string({ unit: fc.constantFrom(...'abz09 -_./:#\'"\né'), maxLength: 20 })
    .filter((s) => s.trim() !== '' || !s.includes('\n'));
  for (const value of sample(fc.dictionary(fc.constantFrom('a', 'b', 'c'), fc.array(ordinary)), 300))
    assert.equal(yaml11(value), stringify(value, { version: '1.1', lineWidth: 0 }), JSON.stringify(value));
});

const keys: SeedKeys = {
  projectPublicKey: 'ssh-ed25519 AAAAproject holos',
  hostKey: {
    privateKey: '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n',
    publicKey: 'ssh-ed25519 AAAAhost',
  },
};

/** Every seed document of every instance, each expected to read as the yaml package reads it. */
function seedCases(project: ResolvedProject, what: string): Case[] {
  return project.instances.flatMap((instance) => {
    const service = project.services.find((s) => s.name === instance.service)!;
    const seed = renderSeed(project, service, instance, keys);
    return (['meta-data', 'user-data', 'network-config'] as const).map((file) => ({
      what: `${what}: ${instance.name}'s ${file}`,
      text: seed[file],
      expected: parse(seed[file], { version: '1.1' }) as unknown,
    }));
  });
}

test('PyYAML reads every seed document of every valid fixture', (t) => {
  if (!havePyyaml(t)) return;
  const dir = join(import.meta.dirname, '..', 'fixtures', 'compose', 'valid');
  const cases = readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .flatMap((name) => {
      const result = validateComposeFile(join(dir, name));
      assert.ok(result.ok, result.ok ? '' : result.problems.join('\n'));
      return seedCases(resolveProject(result.loaded), name);
    });
  assertPyyamlReads(cases);
});

test('PyYAML reads user-data with fuzzed commands, files, packages, keys and mount targets', (t) => {
  if (!havePyyaml(t)) return;
  const commands = fc.array(fc.oneof(text, fc.array(text, { maxLength: 3 })), { maxLength: 3 });
  const writeFile = fc.record({
    path: text.map((s) => `/${s}`),
    content: text,
    owner: text.filter((s) => s !== ''),
    permissions: fc.constantFrom('0644', '600', '0755'),
  });
  const cloudInit = fc.record({
    packages: fc.array(text, { maxLength: 3 }),
    ssh_authorized_keys: fc.array(text, { maxLength: 2 }),
    write_files: fc.array(writeFile, { maxLength: 2 }),
    runcmd: commands,
    bootcmd: commands,
  });
  // Any target that validate accepts; it is split on ":", so it has none.
  const target = text
    .map((s) => `/srv/${s.replace(/:/g, '')}`)
    .filter((s) => typeof parseMount(`data:${s}`) !== 'string');
  const services = sample(fc.record({ cloud_init: cloudInit, target: fc.option(target) }), 150);
  assertPyyamlReads(
    services.flatMap(({ cloud_init, target }, i) => {
      // JSON is YAML too, and writes any string as one escaped line.
      const compose = {
        services: {
          web: { image: './base.qcow2', cloud_init, volumes: target === null ? [] : [`data:${target}`] },
        },
        volumes: { data: {} },
      };
      const project = resolveProject(loadText(JSON.stringify(compose)));
      const cases = seedCases(project, `service ${i} ${fromSeed}`);
      const userData = cases.find((c) => c.what.endsWith('user-data'))!;
      // What validate made of the fuzzed fields, as the renderer got them, is where they land.
      const init = project.services[0]!.spec.cloud_init;
      const expected = userData.expected as Record<string, unknown[]> & {
        users: { ssh_authorized_keys: string[] }[];
      };
      assert.deepEqual(expected.runcmd, [firstBootReport, ...init.runcmd]);
      assert.deepEqual(expected.bootcmd!.slice(expected.bootcmd!.length - init.bootcmd.length), init.bootcmd);
      assert.deepEqual(expected.write_files ?? [], init.write_files);
      assert.deepEqual(expected.packages, init.packages.length > 0 ? init.packages : undefined);
      assert.deepEqual(expected.users[0]!.ssh_authorized_keys, [
        ...init.ssh_authorized_keys,
        keys.projectPublicKey,
      ]);
      return cases;
    }),
  );
});
