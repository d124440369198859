import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { environmentProblem, renderEnvironment } from '../src/cloudinit/environment.js';
import { execWord, renderMainUnit } from '../src/cloudinit/main-service.js';
import { renderSeed } from '../src/cloudinit/render.js';
import { validateComposeFile } from '../src/compose/load.js';
import { resolveProject } from '../src/compose/resolve.js';
import { splitWords } from '../src/compose/words.js';
import { seedContentHash, seedIdentity } from '../src/resources/seed.js';
import { mainServiceState, showCommand } from '../src/ssh/completion.js';
import { composeDir } from './support/compose.js';

// compose's keys with a meaning inside the VM (issue #15): environment and env_file, the main
// service (command, entrypoint, working_dir, user), hostname, extra_hosts, labels. The e2e
// test/e2e/compose.test.ts proves them in a real guest.

const keys = {
  projectPublicKey: 'ssh-ed25519 AAAA p',
  hostKey: { privateKey: 'k', publicKey: 'ssh-ed25519 BBBB h' },
};

function load(text: string, files: Record<string, string> = {}, env: Record<string, string> = {}) {
  const dir = composeDir(text);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const result = validateComposeFile(join(dir, 'holos.yaml'), { env });
  return result;
}

function project(text: string, files?: Record<string, string>, env?: Record<string, string>) {
  const result = load(text, files, env);
  assert.ok(result.ok, result.ok ? '' : result.problems.join('\n'));
  return resolveProject(result.loaded);
}

function seedOf(text: string, instance = 'app-0') {
  const p = project(text);
  const i = p.instances.find((x) => x.name === instance)!;
  const s = p.services.find((x) => x.name === i.service)!;
  const files = renderSeed(p, s, i, keys);
  return { p, s, i, files, userData: parse(files['user-data']) as Record<string, unknown> };
}

test('a file without the guest keys makes the seeds it made before (identities pinned at eca157f)', () => {
  const dir = join(import.meta.dirname, '..', 'fixtures', 'compose', 'valid');
  const result = validateComposeFile(join(dir, 'sample-demo.yaml'));
  assert.ok(result.ok);
  const p = resolveProject(result.loaded);
  const identities = Object.fromEntries(
    p.instances.map((i) => [
      i.name,
      seedIdentity(
        p.services.find((s) => s.name === i.service)!,
        i,
      ),
    ]),
  );
  assert.deepEqual(identities, {
    'db-0': '14ae4f3b29ab35f4',
    'web-0': 'ef413c3aadc51ec7',
    'web-1': '97c66ded3f4d5566',
  });
});

test('environment: env_file files in order, then environment; a bare name comes from the host, or is left out', () => {
  const p = project(
    `services:
  app:
    image: ./base.qcow2
    env_file: [./a.env, {path: ./missing.env, required: false}, ./b.env]
    environment:
      - A=from-environment
      - FROM_HOST
      - UNSET_ON_HOST
      - C
`,
    { 'a.env': 'A=a\nB=a\nUNSET_ON_HOST=file\n', 'b.env': 'B=b\n' },
    { FROM_HOST: 'host value', C: '3' },
  );
  assert.deepEqual(p.services[0]!.environment, {
    A: 'from-environment',
    B: 'b',
    FROM_HOST: 'host value',
    C: '3',
  });
});

test('environment: the file both pam_env and systemd read the same way, and the values neither can hold', () => {
  assert.equal(renderEnvironment({ B: 'two words', A: 'x=y' }), 'A=x=y\nB=two words\n');
  for (const [name, value, message] of [
    ['A', 'line\nbreak', /line break/],
    ['A', 'back\\slash', /backslash/],
    ['A', '"quoted"', /starts with a quote/],
    ['A', ' padded', /blank/],
    ['1A', 'x', /variable name/],
  ] as const)
    assert.match(environmentProblem(name, value) ?? '', message, `${name}=${value}`);
  assert.equal(environmentProblem('PATH', '/usr/bin:$HOME/bin'), undefined);
});

test('a string command is split as compose splits it, without a shell', () => {
  assert.deepEqual(splitWords(`python3 -m http.server --bind "0.0.0.0" 'a b' c\\ d`), [
    'python3',
    '-m',
    'http.server',
    '--bind',
    '0.0.0.0',
    'a b',
    'c d',
  ]);
  assert.match(String(splitWords('make && run')), /holds &, which only a shell reads/);
  assert.match(String(splitWords('echo "open')), /never closed/);
});

test('the main service unit: every word means itself to systemd, and systemd-analyze accepts it', () => {
  assert.equal(execWord('say "$HOME" 100%'), '"say \\"$$HOME\\" 100%%"');
  const unit = renderMainUnit({
    argv: ['/bin/sh', '-c', 'echo "$GREETING" > index.html'],
    environment: { GREETING: 'hi' },
    workingDir: '/srv',
    user: 'app',
    group: 'app',
  });
  assert.match(unit, /^ExecStart="\/bin\/sh" "-c" "echo \\"\$\$GREETING\\" > index.html"$/m);
  assert.match(unit, /^WorkingDirectory=\/srv$/m);
  assert.match(unit, /^User=app$/m);
  assert.match(unit, /^EnvironmentFile=\/etc\/holos\/main\.env$/m);
  assert.match(unit, /^WantedBy=multi-user\.target$/m);
  let analyze = true;
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
  } catch {
    analyze = false;
  }
  if (!analyze) {
    if (process.env.CI === 'true') throw new Error('systemd-analyze is missing (CI=true)');
    console.error('# SKIP systemd-analyze verify: systemd-analyze is not installed');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'holos-unit-'));
  try {
    const root = renderMainUnit({ argv: ['/bin/sh', '-c', 'exec sleep 1'], environment: {} });
    writeFileSync(join(dir, 'holos-main.service'), root);
    execFileSync('systemd-analyze', ['verify', join(dir, 'holos-main.service')], { stdio: 'pipe' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const guestStack = `services:
  app:
    image: ./base.qcow2
    hostname: web
    environment: {GREETING: hello}
    entrypoint: ["/bin/sh", "-c"]
    command: ["exec python3 -m http.server"]
    working_dir: /srv
    user: "1000:1000"
    extra_hosts: ["db.example:10.1.2.3", "host.internal=host-gateway"]
    labels: {team: web}
`;

test('the seed: the environment appended to /etc/environment, the unit written and enabled last, the hostname', () => {
  const { i, files, userData } = seedOf(guestStack);
  assert.equal(i.hostname, 'web');
  assert.match(files['meta-data'], /local-hostname: web/);
  assert.equal(userData.hostname, 'web');
  const written = userData.write_files as { path: string; content: string; append?: boolean }[];
  assert.deepEqual(
    written.map((f) => [f.path, f.append ?? false]),
    [
      ['/etc/environment', true],
      ['/etc/systemd/system/holos-main.service', false],
      ['/etc/holos/main.env', false],
    ],
  );
  assert.match(written[1]!.content, /^ExecStart="\/bin\/sh" "-c" "exec python3 -m http.server"$/m);
  assert.match(written[1]!.content, /^User=1000$/m);
  assert.match(
    String((userData.runcmd as string[]).at(-1)),
    /systemctl enable --now --no-block holos-main\.service/,
  );
  assert.equal(i.hosts['db.example'], '10.1.2.3');
  assert.equal(i.hosts['host.internal'], '10.0.2.2');
});

test('hostname with replicas: each replica its own; labels change no seed', () => {
  const two = project(guestStack.replace('hostname: web', 'hostname: web\n    replicas: 2'));
  assert.deepEqual(
    two.instances.map((i) => i.hostname),
    ['web-0', 'web-1'],
  );
  const a = seedOf(guestStack);
  const b = seedOf(guestStack.replace('team: web', 'team: ops'));
  assert.equal(seedIdentity(a.s, a.i), seedIdentity(b.s, b.i));
  assert.equal(seedContentHash(a.p, a.s, a.i, keys), seedContentHash(b.p, b.s, b.i, keys));
  const c = seedOf(guestStack.replace('GREETING: hello', 'GREETING: bye'));
  assert.notEqual(
    seedIdentity(a.s, a.i),
    seedIdentity(c.s, c.i),
    'an environment change is a first-boot change',
  );
});

test('env_file that is missing is one line at its place', () => {
  const result = load(`services:\n  app:\n    image: ./base.qcow2\n    env_file: ./nope.env\n`);
  assert.equal(result.ok, false);
  assert.match(
    result.ok ? '' : result.problems[0]!,
    /holos\.yaml:4:15: services\.app\.env_file\[0\]: \.\/nope\.env: no such file \(relative to the compose file\); create it, or write \{path: \.\/nope\.env, required: false\}$/,
  );
});

test("service_completed_successfully reads systemd's word on the main service", () => {
  const show = (props: Record<string, string>) =>
    Object.entries({
      LoadState: 'loaded',
      ExecMainCode: '0',
      ExecMainStatus: '0',
      ExecMainExitTimestampMonotonic: '0',
      ...props,
    })
      .map(([k, v]) => `${k}=${v}`)
      .join('\n');
  assert.match(showCommand, /^systemctl show( -p \w+)+ holos-main\.service$/);
  const cases: [Record<string, string>, ReturnType<typeof mainServiceState>][] = [
    [
      { LoadState: 'not-found', ActiveState: 'inactive' },
      { ended: false, why: 'its main service is not set up yet' },
    ],
    [
      { ActiveState: 'inactive', Result: 'success' },
      { ended: false, why: 'its main service has not started yet' },
    ],
    [
      { ActiveState: 'active', Result: 'success' },
      { ended: false, why: 'its main service is running' },
    ],
    [{ ActiveState: 'activating' }, { ended: false, why: 'its main service is running' }],
    [
      {
        ActiveState: 'inactive',
        Result: 'success',
        ExecMainCode: '1',
        ExecMainExitTimestampMonotonic: '912345',
      },
      { ended: true, ok: true, why: 'its main service exited 0' },
    ],
    [
      {
        ActiveState: 'failed',
        Result: 'exit-code',
        ExecMainCode: '1',
        ExecMainStatus: '3',
        ExecMainExitTimestampMonotonic: '9',
      },
      { ended: true, ok: false, why: 'its main service exited with status 3 (exit-code)' },
    ],
    [
      {
        ActiveState: 'failed',
        Result: 'exit-code',
        ExecMainCode: '1',
        ExecMainStatus: '203',
        ExecMainExitTimestampMonotonic: '9',
      },
      { ended: true, ok: false, why: 'its main service exited with status 203 (exit-code)' },
    ],
    [
      {
        ActiveState: 'failed',
        Result: 'signal',
        ExecMainCode: '2',
        ExecMainStatus: '9',
        ExecMainExitTimestampMonotonic: '9',
      },
      { ended: true, ok: false, why: 'its main service was killed by signal 9' },
    ],
  ];
  for (const [props, expected] of cases)
    assert.deepEqual(mainServiceState(show(props)), expected, JSON.stringify(props));
});
