// exec, console, logs and ssh-config without a VM: argument handling, log line splitting,
// prefixes and tails, following files on a real file system, target resolution errors, and
// the ssh_config / known_hosts rendering (checked by OpenSSH itself where it is installed).

import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import {
  displayable,
  formatLine,
  linePrefix,
  parseTail,
  plain,
  printLogs,
  selectLogs,
  tailStart,
  type Styler,
} from '../src/access/logs.js';
import { LineSplitter } from '../src/util/lines.js';
import {
  configValue,
  hostKeyAlias,
  renderKnownHosts,
  renderSshConfig,
  type SshHost,
} from '../src/access/ssh-config.js';
import {
  describeInstances,
  listInstances,
  pickInstance,
  requireRunning,
  type AccessProject,
  type InstanceInfo,
} from '../src/access/target.js';
import { signalExitCode } from '../src/access/terminal.js';
import { waitOption } from '../src/cli/access.js';
import { followFlagAfterLogs } from '../src/cli/argv.js';
import { UserError } from '../src/errors.js';
import { projectLayout } from '../src/state/layout.js';
import { fingerprintOfLine } from '../src/ssh/session.js';
import { generateKeyPair } from '../src/ssh/keys.js';
import { shellCommand } from '../src/util/shell.js';
import { holosArgs } from './support/cli.js';

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'holos-access-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function holos(args: string[], env: NodeJS.ProcessEnv) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...holosArgs, ...args], {
      env: { ...process.env, HOLOS_FILE: '', ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

// ---------------------------------------------------------------------------------------------
// Arguments

test('logs -f after the verb means --follow; -f before it stays the compose file', () => {
  const argv = (...rest: string[]) => ['node', 'holos', ...rest];
  assert.deepEqual(followFlagAfterLogs(argv('logs', '-f', 'web')), argv('logs', '--follow', 'web'));
  assert.deepEqual(
    followFlagAfterLogs(argv('-f', 'x.yaml', 'logs', '-f', '-n', '5')),
    argv('-f', 'x.yaml', 'logs', '--follow', '-n', '5'),
  );
  assert.deepEqual(followFlagAfterLogs(argv('logs', '-ft', 'db')), argv('logs', '--follow', '-t', 'db'));
  assert.deepEqual(followFlagAfterLogs(argv('logs', '-tf')), argv('logs', '-t', '--follow'));
  assert.deepEqual(
    followFlagAfterLogs(argv('--state-dir', 'logs', 'logs', '-f')),
    argv('--state-dir', 'logs', 'logs', '--follow'),
  );
  assert.deepEqual(
    followFlagAfterLogs(argv('--profile', 'tools', '--env-file', 'x.env', 'logs', '-f')),
    argv('--profile', 'tools', '--env-file', 'x.env', 'logs', '--follow'),
  );
  // Other verbs, words after --, and clusters with other letters are left alone.
  assert.deepEqual(followFlagAfterLogs(argv('exec', 'web-0', '-f', 'x')), argv('exec', 'web-0', '-f', 'x'));
  assert.deepEqual(followFlagAfterLogs(argv('-f', 'logs', 'up')), argv('-f', 'logs', 'up'));
  assert.deepEqual(followFlagAfterLogs(argv('logs', '--', '-f')), argv('logs', '--', '-f'));
  assert.deepEqual(followFlagAfterLogs(argv('logs', '-fn', '3')), argv('logs', '-fn', '3'));
});

test('exec -w: durations, 0 for no wait, and a clear error otherwise', async () => {
  assert.equal(await waitOption('60s'), 60_000);
  assert.equal(await waitOption('5m'), 300_000);
  assert.equal(await waitOption('0'), 0);
  await assert.rejects(
    waitOption('60'),
    (e: Error) => e instanceof UserError && /^-w 60: invalid duration/.test(e.message),
  );
  await assert.rejects(waitOption('-1s'), UserError);
});

test('logs -n: a count or all', () => {
  assert.equal(parseTail('all'), undefined);
  assert.equal(parseTail('0'), 0);
  assert.equal(parseTail('25'), 25);
  assert.throws(() => parseTail('-3'), /-n -3: use a number of lines or all/);
  assert.throws(() => parseTail('ten'), UserError);
});

test('a remote exit signal becomes 128 + its number, as a shell reports it', () => {
  assert.equal(signalExitCode('TERM'), 143);
  assert.equal(signalExitCode('SIGKILL'), 137);
  assert.equal(signalExitCode('INT'), 130);
  assert.equal(signalExitCode('NOPE'), 255);
});

// ---------------------------------------------------------------------------------------------
// Log lines

test('lines: split across chunk boundaries, UTF-8 kept whole, CRLF trimmed, the partial line held', () => {
  const s = new LineSplitter();
  const bytes = Buffer.from('héllo\r\nwörld\nlog', 'utf8');
  const lines: string[] = [];
  // One byte at a time splits é and ö in the middle.
  for (const byte of bytes) lines.push(...s.push(Buffer.from([byte])));
  assert.deepEqual(lines, ['héllo', 'wörld']);
  assert.equal(s.pending, true);
  assert.deepEqual(s.push(Buffer.from('in: ')), []);
  assert.deepEqual(s.flush(), ['login: ']);
  assert.equal(s.pending, false);
  assert.deepEqual(s.flush(), []);
  assert.deepEqual(s.push(Buffer.from('\r\n\n')), ['', '']);
  assert.deepEqual(s.push(Buffer.from('a\rb\n')), ['a\rb'], 'a bare CR inside a line is the guest’s');
});

test('log lines are made safe to print: colours stay, screen control goes, redrawn lines keep their last version', () => {
  assert.equal(displayable('plain text\twith a tab'), 'plain text\twith a tab');
  assert.equal(displayable('\x1b[0;32m  OK  \x1b[0m] Started x'), '\x1b[0;32m  OK  \x1b[0m] Started x');
  assert.equal(displayable("\x1b[H\x1b[J\x1b[1;1H  Booting `Debian'"), "  Booting `Debian'");
  assert.equal(displayable('\x1b]0;title\x07after'), 'after');
  assert.equal(displayable('\x1b(Bx\x1b=y\x07\x08z'), 'xyz');
  assert.equal(displayable('[  OK  ] Started foo\r\x1b[K'), '[  OK  ] Started foo');
  assert.equal(displayable('10%\r50%\r100%'), '100%');
  assert.equal(displayable('\x1b[K'), '');
  assert.equal(displayable(''), '');
});

test('prefix: the name padded to the widest, a bar, and the colour applied by the styler', () => {
  assert.equal(linePrefix('db-0', 6, 'cyan', plain), 'db-0   | ');
  const tagged: Styler = (color, text) => `<${color}>${text}</${color}>`;
  assert.equal(linePrefix('web-10', 6, 'yellow', tagged), '<yellow>web-10 |</yellow> ');
  assert.equal(formatLine('a | ', 'text'), 'a | text\n');
  assert.equal(
    formatLine('a | ', 'text', new Date(Date.UTC(2025, 0, 2, 3, 4, 5, 6))),
    'a | 2025-01-02T03:04:05.006Z text\n',
  );
  assert.equal(formatLine('a | ', 'text', null), `a | ${' '.repeat(24)} text\n`);
});

test('tail: where the last N lines start, whatever the block size and final newline', async (t) => {
  const dir = await tempDir(t);
  const check = async (content: string, n: number, expected: string) => {
    const path = join(dir, 'log');
    await writeFile(path, content);
    for (const blockSize of [1, 2, 3, 7, 64 * 1024]) {
      const start = await tailStart(path, Buffer.byteLength(content), n, blockSize);
      assert.equal(
        content.slice(start),
        expected,
        `${JSON.stringify(content)} -n ${n} (blocks of ${blockSize})`,
      );
    }
  };
  await check('a\nb\nc\n', 2, 'b\nc\n');
  await check('a\nb\nc', 2, 'b\nc');
  await check('a\nb\nc\n', 3, 'a\nb\nc\n');
  await check('a\nb\nc\n', 10, 'a\nb\nc\n');
  await check('a\nb\nc\n', 0, '');
  await check('\n\n\n', 2, '\n\n');
  await check('', 5, '');
  await check('only', 1, 'only');
});

// ---------------------------------------------------------------------------------------------
// Instances on disk: resolution errors and logs

async function fakeProject(t: TestContext, logs: Record<string, string>): Promise<AccessProject> {
  const stateDir = await tempDir(t);
  const layout = projectLayout(stateDir, 'demo');
  for (const [name, content] of Object.entries(logs)) {
    const files = layout.instance(name);
    await mkdir(files.dir, { recursive: true });
    await writeFile(files.serialLog, content);
  }
  return { name: 'demo', layout, services: ['web', 'db'], declared: ['web-0', 'web-1', 'db-0'] };
}

test('targets: an instance by name, a service by its replica 0, and errors that list the instances', async (t) => {
  const project = await fakeProject(t, { 'web-0': '', 'web-1': '', 'db-0': '', 'web-api-0': '' });
  const instances = await listInstances(project.layout);
  assert.deepEqual(
    instances.map((i) => [i.name, i.service, i.index, i.state]),
    [
      ['db-0', 'db', 0, 'absent'],
      ['web-0', 'web', 0, 'absent'],
      ['web-1', 'web', 1, 'absent'],
      ['web-api-0', 'web-api', 0, 'absent'],
    ],
  );
  assert.equal(pickInstance(project, instances, 'web-1').name, 'web-1');
  assert.equal(pickInstance(project, instances, 'web').name, 'web-0');
  assert.equal(pickInstance(project, instances, 'web-api').name, 'web-api-0');
  assert.throws(
    () => pickInstance(project, instances, 'cache'),
    (e: Error) =>
      e instanceof UserError &&
      e.message ===
        'no instance or service cache in project demo; instances: db-0 (absent), web-0 (absent), web-1 (absent), web-api-0 (absent)',
  );
  assert.throws(
    () => pickInstance(project, [], 'db'),
    /^UserError: db has not been created yet; it has no instances; holos up creates them$/,
  );

  const stopped: InstanceInfo = { ...instances[1]!, state: 'stopped', pid: undefined, applied: undefined };
  assert.throws(
    () => requireRunning(stopped, [instances[0]!, stopped]),
    /^UserError: web-0 is stopped; start it with holos start web \(instances: db-0 \(absent\), web-0 \(stopped\)\)$/,
  );
  const paused: InstanceInfo = { ...stopped, state: 'paused', pid: 1 };
  assert.throws(
    () => requireRunning(paused, [paused]),
    /^UserError: web-0 is paused; resume it with holos up/,
  );
  assert.equal(describeInstances([]), 'it has no instances; holos up creates them');
});

test('logs: a service is all its replicas, prefixed and aligned; -n per instance; unknown names listed', async (t) => {
  const project = await fakeProject(t, {
    'web-0': 'w0 one\r\nw0 two\r\n',
    'web-1': 'w1 one\nw1 two\nw1 three\nprompt: ',
    'db-0': 'd one\n',
  });
  let out = '';
  const options = {
    follow: false,
    timestamps: false,
    style: plain,
    write: (s: string) => Promise.resolve(void (out += s)),
  };
  await printLogs(project, await selectLogs(project, ['web']), options);
  assert.equal(
    out,
    'web-0 | w0 one\nweb-0 | w0 two\nweb-1 | w1 one\nweb-1 | w1 two\nweb-1 | w1 three\nweb-1 | prompt: \n',
  );

  out = '';
  await printLogs(project, await selectLogs(project, []), { ...options, tail: 1 });
  assert.equal(out, 'db-0  | d one\nweb-0 | w0 two\nweb-1 | prompt: \n');

  out = '';
  await printLogs(project, await selectLogs(project, ['db-0', 'web-1']), { ...options, tail: 0 });
  assert.equal(out, '');

  await assert.rejects(
    selectLogs(project, ['web', 'cache', 'web-7']),
    /^UserError: no service or instance cache, web-7 in project demo \(services: web, db; instances: db-0 \(absent\), web-0 \(absent\), web-1 \(absent\)\)$/,
  );
});

/** Polls `read` until it satisfies `done` (the follower runs concurrently); fails after a generous deadline. */
async function until(read: () => string, done: (text: string) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!done(read())) {
    if (Date.now() > deadline) assert.fail(`${what}; output so far:\n${read()}`);
    await sleep(20);
  }
}

test('logs -f: new lines, a prompt without a newline, a recreated instance, a new replica', async (t) => {
  const project = await fakeProject(t, { 'web-0': 'old\n' });
  const log0 = project.layout.instance('web-0').serialLog;
  let out = '';
  const stop = new AbortController();
  const following = printLogs(project, await selectLogs(project, ['web']), {
    follow: true,
    timestamps: true,
    style: plain,
    write: (s) => Promise.resolve(void (out += s)),
    signal: stop.signal,
    pollMs: 10,
  });
  const blank = ' '.repeat(24);
  const stamp = '\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z';
  try {
    await until(
      () => out,
      (s) => s.includes('old'),
      'the existing line',
    );
    assert.equal(out, `web-0 | ${blank} old\n`, 'lines already there have no arrival time');

    await appendFile(log0, 'new line\r\nweb-0 login: ');
    await until(
      () => out,
      (s) => s.includes('login: '),
      'the appended line and the prompt',
    );
    assert.match(out.split('\n')[1]!, new RegExp(`^web-0 \\| ${stamp} new line$`));
    assert.match(out.split('\n')[2]!, new RegExp(`^web-0 \\| ${stamp} web-0 login: $`));

    // Recreated: the directory goes, a new one comes with a new log (perhaps even shorter).
    await rm(project.layout.instance('web-0').dir, { recursive: true });
    await mkdir(project.layout.instance('web-0').dir);
    await writeFile(log0, 'reborn\n');
    await until(
      () => out,
      (s) => s.includes('reborn'),
      'the recreated instance’s log from its start',
    );

    // A new replica of the followed service; another service's instance is not followed.
    for (const name of ['web-1', 'db-0']) {
      await mkdir(project.layout.instance(name).dir);
      await writeFile(project.layout.instance(name).serialLog, `${name} booting\n`);
    }
    await until(
      () => out,
      (s) => s.includes('web-1 booting'),
      'the new replica',
    );
    assert.match(out, new RegExp(`\nweb-1 \\| ${stamp} web-1 booting\n`));
  } finally {
    stop.abort();
    await following;
  }
  assert.doesNotMatch(out, /db-0/);
  assert.equal(out.match(/reborn/g)?.length, 1);
});

test('logs through the CLI: -p without a compose file; colour only on a terminal, never with NO_COLOR', async (t) => {
  const project = await fakeProject(t, { 'web-0': 'hello\n' });
  const env = { HOLOS_STATE_DIR: project.layout.stateDir };
  const piped = await holos(['-p', 'demo', 'logs', 'web'], env);
  assert.deepEqual(piped, { code: 0, stdout: 'web-0 | hello\n', stderr: '' });

  const missing = await holos(['-p', 'nope', 'logs'], env);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, `holos: no project nope in ${project.layout.stateDir} (projects: demo)\n`);
  const noTimes = await holos(['-p', 'demo', 'logs', '-t'], env);
  assert.match(noTimes.stderr, /^holos: -t needs -f/);

  // A terminal: script(1) gives the command one.
  if (spawnSync('script', ['--version']).status !== 0) {
    t.diagnostic('script(1) is missing: colour on a terminal not checked');
    return;
  }
  const onTty = (extra: NodeJS.ProcessEnv) => {
    const command = shellCommand([process.execPath, ...holosArgs, '-p', 'demo', 'logs', 'web']);
    // Without CI too: node counts a terminal under an unknown CI as having no colours.
    const { NO_COLOR: _n, FORCE_COLOR: _f, CI: _c, ...inherited } = process.env;
    const childEnv = { ...inherited, ...env, HOLOS_FILE: '', TERM: 'xterm', ...extra };
    return spawnSync('script', ['-q', '-e', '-c', command, '/dev/null'], { env: childEnv, encoding: 'utf8' })
      .stdout;
  };
  assert.match(onTty({}), /\x1b\[36mweb-0 \|\x1b\[39m hello/); // eslint-disable-line no-control-regex
  assert.doesNotMatch(onTty({ NO_COLOR: '1' }), /\x1b\[/); // eslint-disable-line no-control-regex
});

// ---------------------------------------------------------------------------------------------
// ssh-config

const host = (over: Partial<SshHost> = {}): SshHost => ({
  instance: 'web-0',
  project: 'demo',
  port: 40022,
  user: 'debian',
  identityFile: '/state/ssh/demo/id_ed25519',
  knownHostsFile: '/state/ssh/demo/known_hosts',
  hostPublicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHost web-0 host key',
  ...over,
});

test('ssh-config: a Host block per instance, pinned host key, values quoted for ssh_config', () => {
  assert.equal(
    renderSshConfig([host(), host({ instance: 'db-0', port: 40023, user: 'ubuntu' })]),
    [
      'Host web-0 web-0.demo',
      '  HostName 127.0.0.1',
      '  Port 40022',
      '  User debian',
      '  IdentityFile /state/ssh/demo/id_ed25519',
      '  IdentitiesOnly yes',
      '  UserKnownHostsFile /state/ssh/demo/known_hosts',
      '  HostKeyAlias web-0.demo.holos',
      '  StrictHostKeyChecking yes',
      '  UpdateHostKeys no',
      '',
      'Host db-0 db-0.demo',
      '  HostName 127.0.0.1',
      '  Port 40023',
      '  User ubuntu',
      '  IdentityFile /state/ssh/demo/id_ed25519',
      '  IdentitiesOnly yes',
      '  UserKnownHostsFile /state/ssh/demo/known_hosts',
      '  HostKeyAlias db-0.demo.holos',
      '  StrictHostKeyChecking yes',
      '  UpdateHostKeys no',
      '',
    ].join('\n'),
  );
  assert.equal(
    renderKnownHosts([host()]),
    'web-0.demo.holos ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHost\n[127.0.0.1]:40022 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHost\n',
  );
  assert.equal(hostKeyAlias(host()), 'web-0.demo.holos');
  assert.equal(configValue('/plain/path'), '/plain/path');
  assert.equal(configValue('/my state/100%/key'), '"/my state/100%%/key"');
  assert.equal(configValue('/a#b'), '"/a#b"');
  assert.throws(() => configValue('/a"b'), UserError);
});

test('ssh-config: OpenSSH reads the block as written (ssh -G), and the fingerprint matches ssh-keygen', async (t) => {
  const dir = await tempDir(t);
  const key = generateKeyPair('test host');
  const config = join(dir, 'my config');
  await writeFile(
    config,
    renderSshConfig([host({ identityFile: join(dir, 'id 100%'), knownHostsFile: join(dir, 'known_hosts') })]),
  );
  const resolved = spawnSync('ssh', ['-G', '-F', config, 'web-0.demo'], { encoding: 'utf8' });
  if (resolved.error) {
    t.diagnostic('ssh is missing: OpenSSH parsing not checked');
    return;
  }
  assert.equal(resolved.status, 0, resolved.stderr);
  const options = new Map(
    resolved.stdout.split('\n').map((l) => [l.split(' ')[0]!, l.slice(l.indexOf(' ') + 1)]),
  );
  assert.equal(options.get('hostname'), '127.0.0.1');
  assert.equal(options.get('port'), '40022');
  assert.equal(options.get('user'), 'debian');
  assert.equal(options.get('identityfile'), join(dir, 'id 100%%'), 'ssh -G shows %-tokens unexpanded');
  assert.equal(options.get('userknownhostsfile'), join(dir, 'known_hosts'));
  assert.equal(options.get('hostkeyalias'), 'web-0.demo.holos');
  assert.equal(options.get('stricthostkeychecking'), 'true');

  // Token expansion happens when ssh loads the key: `%%` must name the file `id 100%`.
  await writeFile(join(dir, 'id 100%'), key.privateKey, { mode: 0o600 });
  // ssh loads identities once connected: a listener that hangs up at once is enough.
  const server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const port = String((server.address() as AddressInfo).port);
  const verbose = await new Promise<string>((resolve) => {
    const child = spawn('ssh', ['-v', '-F', config, '-o', 'BatchMode=yes', '-p', port, 'web-0.demo', 'true']);
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('close', () => resolve(stderr));
  });
  assert.match(verbose, new RegExp(`identity file ${escapeRegExp(join(dir, 'id 100%'))} type 3\\b`));

  const pub = join(dir, 'key.pub');
  await writeFile(pub, `${key.publicKey}\n`);
  const printed = spawnSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', pub], { encoding: 'utf8' });
  assert.equal(printed.status, 0, printed.stderr);
  assert.equal(printed.stdout.split(' ')[1], fingerprintOfLine(key.publicKey));
});

test('ssh-config through the CLI writes known_hosts 0600 and lists started instances', async (t) => {
  const project = await fakeProject(t, {});
  const key = generateKeyPair('host');
  const files = project.layout.instance('web-0');
  await mkdir(files.dir, { recursive: true });
  await writeFile(
    files.applied,
    JSON.stringify({
      spec: { service: 'web', index: 0, user: 'debian' },
      state: 'running',
      sshPort: 41000,
      hostPublicKey: key.publicKey,
    }),
  );
  const r = await holos(['-p', 'demo', 'ssh-config'], { HOLOS_STATE_DIR: project.layout.stateDir });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^# holos ssh-config for project demo/);
  assert.match(
    r.stdout,
    /\nHost web-0 web-0\.demo\n {2}HostName 127\.0\.0\.1\n {2}Port 41000\n {2}User debian\n/,
  );
  const knownHosts = join(project.layout.sshDir, 'known_hosts');
  assert.equal((await stat(knownHosts)).mode & 0o777, 0o600);
  const [type, blob] = key.publicKey.split(' ');
  assert.equal(
    await readFile(knownHosts, 'utf8'),
    `web-0.demo.holos ${type} ${blob}\n[127.0.0.1]:41000 ${type} ${blob}\n`,
  );
});
