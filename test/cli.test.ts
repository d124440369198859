import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { runCli } from './support/cli.js';
import { composeDir } from './support/compose.js';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'compose');

const holos = (args: string[], cwd = process.cwd(), env: NodeJS.ProcessEnv = {}) =>
  runCli(args, { cwd, env });

test('validate: a valid file prints one summary line and exits 0', async () => {
  const r = await holos(['validate', '-f', join(fixtures, 'valid', 'sample-demo.yaml')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /sample-demo\.yaml: valid \(project demo, 2 services, 3 instances\)\n$/);
  const quiet = await holos(['validate', '-q', '-f', join(fixtures, 'valid', 'sample-demo.yaml')]);
  assert.deepEqual([quiet.code, quiet.stdout, quiet.stderr], [0, '', '']);
});

test('validate: every problem on its own line with file:line:col, exit 1, no stack trace', async () => {
  const r = await holos(['validate', '-f', join(fixtures, 'invalid', 'many-errors.yaml')]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 4);
  for (const line of lines) assert.match(line, /many-errors\.yaml:\d+:\d+: services\.\w+\.\S+: /);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  const quiet = await holos(['validate', '-q', '-f', join(fixtures, 'invalid', 'many-errors.yaml')]);
  assert.deepEqual([quiet.code, quiet.stderr], [1, '']);
});

test('the compose file: holos.yaml, then holos.yml, then $HOLOS_FILE and -f', async () => {
  const dir = composeDir('services:\n  web:\n    image: ./base.qcow2\n', 'found-it');
  const r = await holos(['validate'], dir);
  assert.match(r.stdout, /^holos\.yaml: valid \(project found-it,/);
  const viaEnv = await holos(['validate'], '/', { HOLOS_FILE: join(dir, 'holos.yaml') });
  assert.equal(viaEnv.code, 0, viaEnv.stderr);
  const none = await holos(['validate'], join(dir, '..'));
  assert.equal(none.code, 1);
  assert.match(
    none.stderr,
    /^holos: no holos\.yaml or holos\.yml in .*; create one, or name it with -f FILE\n$/,
  );
  const missing = await holos(['validate', '-f', 'nope.yaml'], dir);
  assert.equal(missing.stderr, 'holos: cannot read nope.yaml: no such file\n');
});

test('-p overrides the project name and must be a DNS label', async () => {
  const dir = composeDir('services:\n  web:\n    image: ./base.qcow2\n');
  assert.match((await holos(['validate', '-p', 'other'], dir)).stdout, /project other,/);
  const bad = await holos(['validate', '-p', 'Bad_Name'], dir);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^holos: -p Bad_Name: a project name must be a DNS label/);
});

test('config prints the normalised project, which is itself a valid holos.yaml', async () => {
  const r = await holos(['config', '-f', join(fixtures, 'valid', 'sample-demo.yaml')]);
  assert.equal(r.code, 0, r.stderr);
  const config = parse(r.stdout) as {
    services: Record<
      string,
      { stop_grace_period: string; 'x-instances': Record<string, { ip: string; ports: string[] }> }
    >;
  };
  assert.equal(config.services.web!.stop_grace_period, '30s');
  assert.deepEqual(config.services.web!['x-instances']['web-1']!.ports, ['8081:80/tcp']);
  assert.equal(config.services.db!['x-instances']['db-0']!.ip, '10.10.0.2');
  const dir = composeDir(r.stdout);
  const again = await holos(['validate'], dir);
  assert.equal(again.code, 0, again.stderr);
  const json = await holos(['config', '--format', 'json', '-f', join(fixtures, 'valid', 'sample-demo.yaml')]);
  assert.deepEqual(JSON.parse(json.stdout), config);
  const bad = await holos(['config', '--format', 'toml', '-f', join(fixtures, 'valid', 'sample-demo.yaml')]);
  assert.equal(bad.stderr, 'holos: --format toml: use yaml or json\n');
});

test('schema prints a JSON Schema that allows x- keys and rejects unknown ones', async () => {
  const r = await holos(['schema']);
  const schema = JSON.parse(r.stdout) as {
    properties: Record<string, unknown>;
    additionalProperties: boolean;
    patternProperties: object;
  };
  assert.deepEqual(Object.keys(schema.properties), ['version', 'name', 'services', 'volumes', 'networks']);
  assert.equal(schema.additionalProperties, false);
  assert.deepEqual(schema.patternProperties, { '^x-': {} });
  assert.match(r.stdout, /"stop_grace_period"/);
});

test('--version and --help', async () => {
  const version = await holos(['--version']);
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
  const help = await holos(['--help']);
  for (const verb of ['validate', 'config', 'schema'])
    assert.match(help.stdout, new RegExp(`\\n  ${verb}\\b`));
  const unknown = await holos(['frobnicate']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /unknown command 'frobnicate'/);
});

test('schema/holos.schema.json is the current schema (regenerate with holos schema)', async () => {
  const { readFileSync } = await import('node:fs');
  const committed = readFileSync(join(import.meta.dirname, '..', 'schema', 'holos.schema.json'), 'utf8');
  assert.equal(committed, (await holos(['schema'])).stdout);
});

test('version: holos alone; with --json, node and QEMU too (null without QEMU)', async () => {
  const { version } = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  assert.deepEqual(await holos(['version']), { code: 0, stdout: `holos ${version}\n`, stderr: '' });
  const json = JSON.parse((await holos(['version', '--json'])).stdout) as Record<string, unknown>;
  assert.deepEqual(Object.keys(json), ['schema_version', 'holos', 'node', 'qemu']);
  assert.equal(json.holos, version);
  assert.match(String(json.qemu), /^\d+\.\d+/, 'CI installs QEMU');
  const none = JSON.parse(
    (await holos(['version', '--json'], process.cwd(), { HOLOS_QEMU_SYSTEM: '/nonexistent' })).stdout,
  ) as {
    qemu: unknown;
  };
  assert.equal(none.qemu, null);
});
