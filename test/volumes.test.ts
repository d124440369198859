import assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { holosArgs } from './support/cli.js';

// `holos volumes` and `down -v` on a state dir with two projects, each with volumes made by the
// real qemu-img, and project a's db-0 recorded as mounting a's volume data (as its last start
// left it: stopped). Nothing boots.

const stateDir = mkdtempSync(join(tmpdir(), 'holos-volumes-'));
after(() => rmSync(stateDir, { recursive: true, force: true }));
const hasQemuImg = spawnSync('qemu-img', ['--version'], { stdio: 'ignore' }).error === undefined;

function needsQemuImg(t: TestContext): boolean {
  if (hasQemuImg) return true;
  if (process.env.CI === 'true') assert.fail('qemu-img not installed (required under CI=true)');
  console.error(`# SKIP ${t.name}: qemu-img not installed`);
  t.skip('qemu-img not installed');
  return false;
}

async function holos(...args: string[]) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...holosArgs, ...args], {
      cwd: stateDir,
      env: { ...process.env, HOLOS_FILE: '', HOLOS_STATE_DIR: stateDir },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function volume(project: string, name: string, size: string) {
  mkdirSync(join(stateDir, 'volumes', project), { recursive: true });
  execFileSync('qemu-img', [
    'create',
    '-q',
    '-f',
    'qcow2',
    join(stateDir, 'volumes', project, `${name}.qcow2`),
    size,
  ]);
}

test('volumes: ls across projects, rm refuses one in use, export and import, down -v keeps the other project', async (t) => {
  if (!needsQemuImg(t)) return;
  volume('a', 'data', '64M');
  volume('a', 'spare', '32M');
  volume('b', 'data', '128M');
  const db = join(stateDir, 'instances', 'a', 'db-0');
  mkdirSync(db, { recursive: true });
  writeFileSync(
    join(db, 'applied.json'),
    JSON.stringify({
      schema_version: 2,
      spec: {
        name: 'db-0',
        service: 'db',
        index: 0,
        mounts: {
          '/data': { type: 'volume', source: 'data', target: '/data', readOnly: false, device: 'vol-data' },
        },
        networks: {},
      },
      state: 'stopped',
      sshPort: 2222,
      hostPorts: [],
      accel: { kind: 'tcg', hostCpu: 'max' },
      hostPublicKey: 'ssh-ed25519 AAAA h',
    }),
  );

  const listed = await holos('volumes', 'ls', '--all', '--format', 'json');
  assert.equal(listed.code, 0, listed.stderr);
  const { volumes } = JSON.parse(listed.stdout) as {
    volumes: { project: string; volume: string; size: number; used_by: { instance: string }[] }[];
  };
  assert.deepEqual(
    volumes.map(
      (v) => `${v.project}/${v.volume} ${v.size / 2 ** 20}M ${v.used_by.map((u) => u.instance).join(',')}`,
    ),
    ['a/data 64M db-0', 'a/spare 32M ', 'b/data 128M '],
  );
  const table = await holos('volumes', '-p', 'a');
  assert.match(table.stdout, /^a +data +64M +[\d.]+ KiB +db-0 \(stopped, rw\) +-$/m);

  const refused = await holos('volumes', 'rm', '-p', 'a', 'spare', 'data');
  assert.deepEqual(
    [refused.code, refused.stderr],
    [
      1,
      'holos: volume data is used by db-0 (stopped, rw); remove its instances first (holos down), or the mount from the file and holos up\n',
    ],
  );
  assert.ok(existsSync(join(stateDir, 'volumes', 'a', 'spare.qcow2')), 'nothing was removed');
  const missing = await holos('volumes', 'rm', '-p', 'a', 'nope');
  assert.deepEqual(
    [missing.code, missing.stderr],
    [1, 'holos: project a has no volume nope (volumes: data, spare)\n'],
  );
  assert.equal((await holos('volumes', 'rm', '-p', 'a', 'spare')).stdout, 'volume spare removed\n');

  const copy = join(stateDir, 'b-data.qcow2');
  assert.equal((await holos('volumes', 'export', '-p', 'b', 'data', copy)).code, 0);
  const again = await holos('volumes', 'export', '-p', 'b', 'data', copy);
  assert.equal(again.stderr, `holos: ${copy} exists; holos never overwrites a file: name another\n`);
  const imported = await holos('volumes', 'import', '-p', 'b', copy, 'restored');
  assert.deepEqual([imported.code, imported.stdout], [0, 'volume restored imported (128M)\n']);

  // down -v of a: its instance and every volume of its own; b's are another project's.
  const down = await holos('down', 'a', '-v');
  assert.equal(down.code, 0, down.stderr);
  assert.equal(existsSync(join(stateDir, 'volumes', 'a')), false);
  const left = JSON.parse((await holos('volumes', 'ls', '--all', '--format', 'json')).stdout) as {
    volumes: { project: string; volume: string }[];
  };
  assert.deepEqual(
    left.volumes.map((v) => `${v.project}/${v.volume}`),
    ['b/data', 'b/restored'],
  );
});
