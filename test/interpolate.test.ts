import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { interpolate, InterpolationError } from '../src/compose/interpolate.js';
import { validateComposeFile } from '../src/compose/load.js';
import { resolveProject } from '../src/compose/resolve.js';

// Variables in the compose file, by the compose specification's rules: what each form gives
// for a variable set, empty and unset; errors with the file's line and column; .env beside the
// file, the environment winning over it; and the properties the issue names.

const vars: Record<string, string> = { SET: 'value', EMPTY: '' };
const lookup = (name: string) => vars[name];

test('each form, for a variable set, empty and unset', () => {
  const table: [string, string][] = [
    ['$SET and ${SET}', 'value and value'],
    ['${UNSET}|${EMPTY}|$UNSET', '||'],
    ['${SET:-d} ${EMPTY:-d} ${UNSET:-d}', 'value d d'],
    ['${SET-d} ${EMPTY-d} ${UNSET-d}', 'value  d'],
    ['${SET:+a} ${EMPTY:+a} ${UNSET:+a}', 'a  '],
    ['${SET+a} ${EMPTY+a} ${UNSET+a}', 'a a '],
    ['${EMPTY?x}', ''],
    ['${UNSET:-${SET}-x}', 'value-x'],
    ['$$SET $$ a$ $1', '$SET $ a$ $1'],
    ['port ${SET}:80/tcp', 'port value:80/tcp'],
  ];
  for (const [text, expected] of table) assert.equal(interpolate(text, lookup), expected, text);
});

test('required variables and bad syntax are errors that say what to do', () => {
  const errors: [string, string][] = [
    [
      '${UNSET:?needed for the port}',
      'variable UNSET is not set: needed for the port (set it in the environment or in .env)',
    ],
    ['${EMPTY:?}', 'variable EMPTY is empty (set it in the environment or in .env)'],
    ['${UNSET?}', 'variable UNSET is not set (set it in the environment or in .env)'],
    ['${SET', '"${SET" is not closed'],
    ['${1x}', '"${1x}" does not start with a variable name; write $$ for a literal $'],
    ['${SET!}', '"${SET!…": after a variable name comes }, :-, -, :?, ?, :+ or +'],
  ];
  for (const [text, message] of errors)
    assert.throws(
      () => interpolate(text, lookup),
      (error: Error) => error instanceof InterpolationError && error.message === message,
      text,
    );
});

test('properties: text without $ is itself; $$ escapes any text; a variable gives its value', () => {
  fc.assert(
    fc.property(
      fc.string().filter((s) => !s.includes('$')),
      (text) => interpolate(text, lookup) === text,
    ),
  );
  fc.assert(
    fc.property(
      fc.string(),
      (text) =>
        interpolate(
          text.replaceAll('$', () => '$$'),
          lookup,
        ) === text,
    ),
  );
  fc.assert(
    fc.property(
      fc.string().filter((s) => !s.includes('$') && !s.includes('}')),
      (value) => interpolate('<${V}>', (n) => (n === 'V' ? value : undefined)) === `<${value}>`,
    ),
  );
});

const dir = mkdtempSync(join(tmpdir(), 'holos-interp-'));
after(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'base.qcow2'), '');
const file = join(dir, 'holos.yaml');
writeFileSync(
  file,
  [
    'name: vars',
    'services:',
    '  web:',
    '    image: ./base.qcow2',
    '    replicas: ${REPLICAS:-1}',
    '    ports: ["${PORT:?set PORT to the host port}:80"]',
    '    cloud_init:',
    '      runcmd: ["echo \'${GREETING}\' $$HOME"]',
    'x-notes: "${NOT_INTERPOLATED:?}"',
    '',
  ].join('\n'),
);

test('in a file: values interpolated and typed as written there, .env beside it, the environment first', () => {
  writeFileSync(join(dir, '.env'), 'PORT=8080\nGREETING="hello there"\nREPLICAS=2\n');
  const result = validateComposeFile(file, { env: { REPLICAS: '3' } });
  assert.ok(result.ok, result.ok ? '' : result.problems.join('\n'));
  const project = resolveProject(result.loaded);
  assert.equal(project.services[0]!.spec.replicas, 3, 'the environment wins over .env');
  assert.deepEqual(
    project.instances.map((i) => i.ports[0]!.host),
    [8080, 8081, 8082],
  );
  assert.deepEqual(project.services[0]!.spec.cloud_init.runcmd, ["echo 'hello there' $HOME"]);

  const other = join(dir, 'other.env');
  writeFileSync(other, 'PORT=9000\n');
  const named = validateComposeFile(file, { env: {}, envFile: other });
  assert.ok(named.ok);
  assert.equal(resolveProject(named.loaded).instances[0]!.ports[0]!.host, 9000);
  const missing = validateComposeFile(file, { env: { HOLOS_ENV_FILE: join(dir, 'nope.env') } });
  assert.deepEqual(missing.ok ? [] : missing.problems, [
    `${file}: ${join(dir, 'nope.env')}: no such env file`,
  ]);
});

test('in a file: an unset required variable is one line at its place', () => {
  rmSync(join(dir, '.env'));
  const result = validateComposeFile(file, { env: {} });
  assert.deepEqual(result.ok ? [] : result.problems, [
    `${file}:6:13: services.web.ports[0]: variable PORT is not set: set PORT to the host port (set it in the environment or in .env)`,
  ]);
});
