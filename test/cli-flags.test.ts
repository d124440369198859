import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { holosArgs } from './support/cli.js';
import { composeDir } from './support/compose.js';

// Every short flag of every verb means what that verb's help says, not a global option of the
// same letter (`holos down -v` printed the version and did nothing: the global -v won). Each is
// run the real way, through the CLI, next to its long form.

const stateDir = mkdtempSync(join(tmpdir(), 'holos-flags-'));
after(() => rmSync(stateDir, { recursive: true, force: true }));

async function holos(args: string[], cwd: string) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...holosArgs, ...args], {
      cwd,
      env: { ...process.env, HOLOS_FILE: '', HOLOS_STATE_DIR: stateDir },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const dir = composeDir(
  'name: flags\nservices:\n  db:\n    image: ./base.qcow2\n    volumes: [data:/data]\nvolumes:\n  data: {}\n',
);
// The project's volume on disk, as an earlier `up` would have left it.
mkdirSync(join(stateDir, 'volumes', 'flags'), { recursive: true });
writeFileSync(join(stateDir, 'volumes', 'flags', 'data.qcow2'), '');

test('-V and --version print the version; -v is not a global option', async () => {
  for (const flag of ['-V', '--version']) {
    const r = await holos([flag], dir);
    assert.match(r.stdout, /^\d+\.\d+\.\d+\n$/, flag);
  }
  const r = await holos(['-v'], dir);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /unknown option '-v'/);
});

test('down -v is down --volumes: the plan removes the volumes; a plain down keeps them', async () => {
  for (const flag of ['-v', '--volumes']) {
    const r = await holos(['down', flag, '--dry-run'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /- volume data: remove \(down --volumes\)/, flag);
  }
  const plain = await holos(['down', '--dry-run'], dir);
  assert.equal(plain.code, 0, plain.stderr);
  assert.doesNotMatch(plain.stdout, /volume/);
  // Also before the project name, without a compose file.
  const named = await holos(['down', 'flags', '-v', '--dry-run'], stateDir);
  assert.match(named.stdout, /- volume data: remove \(down --volumes\)/);
});

test('validate -q, ps -a: their own flags', async () => {
  assert.deepEqual(await holos(['validate', '-q'], dir), await holos(['validate', '--quiet'], dir));
  assert.equal((await holos(['validate', '-q'], dir)).stdout, '');
  const short = await holos(['ps', '-a'], dir);
  assert.equal(short.code, 0, short.stderr);
  assert.deepEqual(short, await holos(['ps', '--all'], dir));
});

test('exec -u -w -t and logs -n -t are taken by the verb (the error is about the instance)', async () => {
  const exec = await holos(['exec', '-u', 'root', '-w', '0', '-t', 'nope', '--', 'true'], dir);
  assert.equal(exec.code, 1);
  assert.match(exec.stderr, /^holos: no instance or service nope in project flags/);
  const logs = await holos(['logs', '-n', '5', 'nope'], dir);
  assert.equal(logs.code, 1);
  assert.match(logs.stderr, /nope/);
  assert.doesNotMatch(`${exec.stderr}${logs.stderr}`, /unknown option|internal error/);
});

test('snapshot: a target or --all, a name to restore or remove, names that are names; nothing is changed', async () => {
  const cases: [string[], string][] = [
    [
      ['snapshot', 'save'],
      'holos: holos snapshot save: name an instance or a service, or give --all for the whole stack\n',
    ],
    [
      ['snapshot', 'restore', 'db'],
      'holos: holos snapshot restore: name the snapshot; holos snapshot ls lists them\n',
    ],
    [
      ['snapshot', 'rm', '--all'],
      'holos: holos snapshot rm: name the snapshot; holos snapshot ls lists them\n',
    ],
    [
      ['snapshot', 'save', 'db', 'a b'],
      'holos: snapshot name "a b": use letters, digits, ".", "_" and "-", at most 64\n',
    ],
    [['snapshot', 'ls', '--format', 'yaml'], 'holos: --format yaml: use table or json\n'],
    [['snapshot', 'save', 'db', 'one'], 'holos: db has not been created yet; holos up creates it\n'],
    [
      ['snapshot', 'save', 'nope'],
      'holos: no instance or service nope in project flags; holos ps lists them\n',
    ],
  ];
  for (const [args, stderr] of cases) {
    const r = await holos(args, dir);
    assert.deepEqual([r.code, r.stderr], [1, stderr], args.join(' '));
  }
  const ls = await holos(['snapshot', 'ls'], dir);
  assert.deepEqual(
    [ls.code, ls.stdout],
    [0, 'no snapshots in project flags; holos snapshot save <instance|service> [name] takes one\n'],
  );
});
