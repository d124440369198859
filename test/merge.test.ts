import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { toConfig } from '../src/compose/config.js';
import { interpolate } from '../src/compose/interpolate.js';
import { findComposeFiles, validateComposeFiles } from '../src/compose/load.js';
import { Merged } from '../src/compose/merge.js';
import { activeServices } from '../src/compose/profiles.js';
import { resolveProject } from '../src/compose/resolve.js';
import { UserError } from '../src/errors.js';
import { holosArgs } from './support/cli.js';

// Several compose files as one project (compose/merge.ts): compose's merge rules, every problem
// still at its own file:line:col, and the properties the issue asks for: merging a file with
// itself changes nothing, and interpolation without variables is the identity.

const work = mkdtempSync(join(tmpdir(), 'holos-merge-'));
after(() => rmSync(work, { recursive: true, force: true }));

let count = 0;
/** A fresh directory with these files in it; returns their paths, in order. */
function project(files: Record<string, string>): string[] {
  const dir = join(work, `p${count++}`);
  mkdirSync(dir);
  return Object.entries(files).map(([name, text]) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  });
}

function merged(files: Record<string, string>) {
  const result = validateComposeFiles(project(files), { env: {} });
  assert.ok(result.ok, result.ok ? '' : result.problems.join('\n'));
  return result.loaded;
}

function problems(files: Record<string, string>): string[] {
  const paths = project(files);
  const result = validateComposeFiles(paths, { env: {} });
  assert.equal(result.ok, false);
  // Each line without the directory: `b.yaml:3:5: …`.
  return result.ok ? [] : result.problems.map((line) => line.slice(line.lastIndexOf('/') + 1));
}

const base = `services:
  web:
    image: debian:12
    ports: ["8080:80", "8443:443"]
    volumes: ["./site:/srv", "data:/var/lib/data"]
    cloud_init:
      runcmd: [echo base]
volumes:
  data: {}
`;

test('mappings merge, sequences append, unique keys and commands are replaced', () => {
  const { compose, files } = merged({
    'a.yaml': base,
    'b.yaml': `services:
  web:
    ports: ["8443:443", "9090:90"]
    volumes: ["./other:/srv"]
    vm: {memory_mb: 1024}
    cloud_init:
      runcmd: [echo override]
`,
  });
  assert.equal(files.length, 2);
  const web = compose.services.web!;
  assert.equal(web.vm.memory_mb, 1024);
  assert.equal(web.vm.vcpu, 1, 'the base keeps what the override does not say');
  assert.deepEqual(
    web.ports.map((p) => `${p.host}:${p.guest}`),
    ['8080:80', '8443:443', '9090:90'],
  );
  // The volume at /srv is the override's; the other stays, in place.
  assert.deepEqual(
    web.volumes.map((m) => `${m.source}:${m.target}`),
    ['./other:/srv', 'data:/var/lib/data'],
  );
  assert.deepEqual(web.cloud_init.runcmd, ['echo base', 'echo override']);
  // A list and a mapping merge by name; a command is replaced whole.
  const raw = new Merged([
    {
      source: 'a',
      data: { services: { web: { environment: ['A=1', 'B=2'], command: ['x'] } } },
      resets: [],
      overrides: [],
    },
    {
      source: 'b',
      data: { services: { web: { environment: { B: '3', C: '4' }, command: ['y'] } } },
      resets: [],
      overrides: [],
    },
  ]).value as { services: { web: { environment: unknown; command: unknown } } };
  assert.deepEqual(raw.services.web.environment, { A: '1', B: '3', C: '4' });
  assert.deepEqual(raw.services.web.command, ['y']);
});

test('!reset removes a value and !override replaces it unmerged', () => {
  const { compose } = merged({
    'a.yaml': base,
    'b.yaml': `services:
  web:
    ports: !reset []
    volumes: !override ["data:/data"]
`,
  });
  const web = compose.services.web!;
  assert.deepEqual(web.ports, []);
  assert.deepEqual(
    web.volumes.map((m) => m.target),
    ['/data'],
  );
});

test('a problem names the file and the line it was written on', () => {
  assert.deepEqual(
    problems({
      'a.yaml': `services:\n  web:\n    image: debian:12\n    replicas: many\n`,
      'b.yaml': `services:\n  web:\n    vm:\n      memory_mb: 64\n    ports: ["80:80", "80:80/udp", "99999:1"]\n  db:\n    image: debian:12\n    replica: 2\n`,
    }),
    [
      'a.yaml:4:15: services.web.replicas: expected a number, got the string "many"',
      'b.yaml:4:18: services.web.vm.memory_mb: must be at least 128 (MiB)',
      'b.yaml:5:35: services.web.ports[2]: host port 99999 is out of range 0-65535',
      'b.yaml:8:5: services.db.replica: unknown key "replica"; did you mean "replicas"? (extension keys start with x-)',
    ],
  );
});

test('an unknown tag is one line; an empty override file is nothing', () => {
  assert.deepEqual(problems({ 'a.yaml': base, 'b.yaml': 'services:\n  web:\n    vm: !bogus {}\n' }), [
    'b.yaml:3:16: unknown tag !bogus; a compose file knows !reset and !override (in a file merged over another)',
  ]);
  assert.equal(merged({ 'a.yaml': base, 'b.yaml': '' }).compose.services.web!.ports.length, 2);
  assert.match(problems({ 'a.yaml': '' })[0]!, /a\.yaml: the file is empty/);
});

test('holos.override.yaml is merged by default; -f and $HOLOS_FILE name the files instead', () => {
  const [main, override] = project({ 'holos.yaml': base, 'holos.override.yaml': 'services: {}\n' });
  const dir = join(main!, '..');
  assert.deepEqual(findComposeFiles(dir), [main, override]);
  assert.deepEqual(findComposeFiles(dir, ['holos.yaml']), [main]);
  const saved = process.env.HOLOS_FILE;
  process.env.HOLOS_FILE = `holos.yaml:${override!}`;
  try {
    assert.deepEqual(findComposeFiles(dir), [main, override]);
  } finally {
    if (saved === undefined) delete process.env.HOLOS_FILE;
    else process.env.HOLOS_FILE = saved;
  }
});

const json = (value: unknown) => JSON.parse(JSON.stringify(value)) as unknown;

test('merging each valid fixture with itself changes nothing', () => {
  const dir = join(import.meta.dirname, '..', 'fixtures', 'compose', 'valid');
  for (const name of readdirSync(dir).filter((f) => /^[^.].*\.ya?ml$/.test(f))) {
    const file = join(dir, name);
    const once = validateComposeFiles([file]);
    const twice = validateComposeFiles([file, file]);
    assert.ok(once.ok && twice.ok, name);
    assert.deepEqual(
      json(toConfig(resolveProject(twice.loaded))),
      json(toConfig(resolveProject(once.loaded))),
      name,
    );
  }
});

/** Compose-shaped data: the keys the rules know, with arbitrary contents. */
const composeLike = fc.record({
  services: fc.dictionary(
    fc.constantFrom('web', 'db', 'cache'),
    fc.record(
      {
        image: fc.string(),
        command: fc.array(fc.string()),
        ports: fc.array(fc.oneof(fc.constantFrom('80', '8080:80', '127.0.0.1:53:53/udp'), fc.string())),
        volumes: fc.array(fc.oneof(fc.constantFrom('./a:/srv', 'data:/srv', 'x:/y:ro'), fc.string())),
        environment: fc.oneof(
          fc.array(fc.string()),
          fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.constant(null)), { noNullPrototype: true }),
        ),
        depends_on: fc.oneof(
          fc.array(fc.string()),
          fc.dictionary(fc.string(), fc.record({ condition: fc.string() }), { noNullPrototype: true }),
        ),
        cloud_init: fc.record({
          runcmd: fc.array(fc.string()),
          write_files: fc.array(fc.record({ path: fc.string() })),
        }),
        anything: fc.jsonValue(),
      },
      { requiredKeys: [] },
    ),
    { noNullPrototype: true },
  ),
});
const layer = (data: unknown) => ({ source: 'file', data, resets: [], overrides: [] });

test('property: one file merged is itself, and merged with itself is still itself', () => {
  fc.assert(
    fc.property(composeLike, (data) => {
      const once = new Merged([layer(data)]).value;
      assert.deepEqual(json(once), json(data));
      assert.deepEqual(json(new Merged([layer(data), layer(data)]).value), json(once));
    }),
    { numRuns: 300 },
  );
});

test('property: interpolation without variables is the identity', () => {
  fc.assert(
    fc.property(
      fc.string().filter((text) => !text.includes('$')),
      (text) =>
        assert.equal(
          interpolate(text, () => 'never'),
          text,
        ),
    ),
    { numRuns: 500 },
  );
});

test('profiles: a service with profiles is part of the project when one is enabled or it is named', () => {
  const spec = (profiles: string[], depends: string[] = []) => ({
    profiles,
    depends_on: depends.map((service, at) => ({ service, required: true, at })),
  });
  const services = {
    web: spec([], ['db']),
    db: spec([]),
    debug: spec(['tools']),
    admin: spec(['ops', 'tools']),
  };
  assert.deepEqual(activeServices(services, []), ['web', 'db']);
  assert.deepEqual(activeServices(services, ['tools']), ['web', 'db', 'debug', 'admin']);
  assert.deepEqual(activeServices(services, ['ops']), ['web', 'db', 'admin']);
  assert.deepEqual(activeServices(services, ['*']), ['web', 'db', 'debug', 'admin']);
  assert.deepEqual(activeServices(services, [], ['debug']), ['web', 'db', 'debug']);
  assert.throws(
    () => activeServices({ web: spec([], ['db']), db: spec(['data']) }, []),
    (error: Error) =>
      error instanceof UserError &&
      error.message ===
        'web depends on db, which is only in profile data; enable it with --profile data (or HOLOS_PROFILES), or name db too',
  );
});

/** holos as a user runs it, in `dir`, with its own state dir. */
async function holos(args: string[], dir: string, env: NodeJS.ProcessEnv = {}) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...holosArgs, ...args], {
      cwd: dir,
      env: {
        ...process.env,
        HOLOS_FILE: '',
        HOLOS_PROFILES: '',
        HOLOS_STATE_DIR: join(dir, 'state'),
        ...env,
      },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

test('the CLI: -f twice, holos.override.yaml by default, --profile and $HOLOS_PROFILES', async () => {
  const [main] = project({
    'holos.yaml': `services:
  web:
    image: ./base.qcow2
  debug:
    image: ./base.qcow2
    profiles: [tools]
`,
    'holos.override.yaml': 'services:\n  web:\n    replicas: 2\n',
    'extra.yaml': 'services:\n  web:\n    replicas: 3\n',
  });
  const dir = join(main!, '..');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '64M']);
  const instances = async (args: string[], env?: NodeJS.ProcessEnv) => {
    const r = await holos([...args, 'plan', '--json'], dir, env);
    assert.equal(r.code, 0, r.stderr);
    const plan = JSON.parse(r.stdout) as { actions: { verb: string; kind: string; name: string }[] };
    return plan.actions.filter((a) => a.kind === 'instance' && a.verb === 'create').map((a) => a.name);
  };
  assert.deepEqual(await instances([]), ['web-0', 'web-1']);
  assert.deepEqual(await instances(['-f', 'holos.yaml', '-f', 'extra.yaml']), ['web-0', 'web-1', 'web-2']);
  assert.deepEqual(await instances(['-f', 'holos.yaml']), ['web-0']);
  assert.deepEqual(await instances(['--profile', 'tools']), ['debug-0', 'web-0', 'web-1']);
  assert.deepEqual(await instances([], { HOLOS_PROFILES: 'tools' }), ['debug-0', 'web-0', 'web-1']);
  const valid = await holos(['validate'], dir);
  assert.equal(
    valid.stdout.trim(),
    'holos.yaml + holos.override.yaml: valid (project ' + basename(dir) + ', 2 services, 3 instances)',
  );
});
