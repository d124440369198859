import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { buildSeedIso, seedHash } from '../src/cloudinit/iso.js';
import { observedStatus, projectStatus } from '../src/access/status.js';
import { resolveProject } from '../src/compose/resolve.js';
import { UserError } from '../src/errors.js';
import { freePort } from '../src/observe/ports.js';
import { isOurQemu, readPid } from '../src/observe/process.js';
import { qemuBinaries } from '../src/qemu/binaries.js';
import { launch, stopGracefully } from '../src/qemu/lifecycle.js';
import { apply, startLimit } from '../src/reconcile/apply.js';
import { desiredState } from '../src/reconcile/desired.js';
import { observeKeys, observeState } from '../src/reconcile/observe.js';
import { plan, type Plan } from '../src/reconcile/plan.js';
import type { ImageSpec } from '../src/resources/image.js';
import * as instance from '../src/resources/instance.js';
import * as keypair from '../src/resources/keypair.js';
import { inspect } from '../src/state/inspect.js';
import { projectLayout, type InstanceLayout } from '../src/state/layout.js';
import type { DiffContext, Target } from '../src/resources/kind.js';
import * as overlay from '../src/resources/overlay.js';
import type { OverlayObserved, OverlaySpec } from '../src/resources/overlay.js';
import * as seed from '../src/resources/seed.js';
import { startSwitch, stopSwitch } from '../src/resources/segment.js';
import * as volume from '../src/resources/volume.js';
import { loadText } from './support/compose.js';

// The runtime against real tools: QEMU processes with no guest (-S: stopped before the first
// instruction, with a live QMP socket), real qemu-img and qemu-io, seed ISOs read back by isoinfo.

const tools = ['qemu-system-x86_64', 'qemu-img', 'qemu-io', 'isoinfo'];
const missing = tools.filter((tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).error);

/** Skips the test, loudly, when a tool is missing; under CI a missing tool is a failure. */
function needsTools(t: TestContext): boolean {
  if (missing.length === 0) return true;
  const why = `${missing.join(', ')} not installed`;
  if (process.env.CI === 'true') assert.fail(`${why} (required under CI=true)`);
  console.error(`# SKIP ${t.name}: ${why}`);
  t.skip(why);
  return false;
}

// Short: unix socket paths must fit in 107 bytes.
const stateDir = mkdtempSync(join(tmpdir(), 'holos-rt-'));
const layout = projectLayout(stateDir, 'rt');
let instances = 0;
/** A fresh instance directory for each test. */
function newInstance(): InstanceLayout {
  const files = layout.instance(`vm-${instances++}`);
  mkdirSync(files.dir, { recursive: true });
  return files;
}

/** The root disk of a new instance directory on `base`. */
function overlaySpec(instance: string, base: ImageSpec, size?: number): OverlaySpec {
  const files = newInstance();
  return {
    instance,
    service: 'vm',
    path: files.overlay,
    base,
    size,
    baseRecord: files.diskBase,
    digestCache: layout.digestCache,
  };
}

/** A diff context where every service has `target` and nothing else is planned. */
const targetOnly = (target: Target): DiffContext => ({
  targetOf: () => target,
  removeVolumes: false,
  project: undefined as never,
  spec: () => undefined,
  observed: () => undefined,
  observedNames: () => [],
  planned: () => undefined,
  pullPolicy: 'missing',
  notice: () => undefined,
});

/** The overlay kind's diff of a disk, in the fields these tests check. */
const diskDiff = (spec: OverlaySpec, seen: OverlayObserved, target: Target) =>
  overlay.overlay
    .diff(spec.instance, spec, seen, targetOnly(target))
    .map(({ kind, name, instance, verb, reason }) => ({ kind, name, instance, verb, reason }));

/** Every QEMU a test starts, so that none outlives the tests. */
const started = new Map<number, string>();

async function killQemu(pid: number, marker: string): Promise<void> {
  // Only a process whose command line still names this QMP socket: never a reused pid.
  if (await isOurQemu(pid, marker))
    for (const signal of ['SIGCONT', 'SIGKILL'] as const)
      try {
        process.kill(pid, signal);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
      }
  started.delete(pid);
}

after(async () => {
  for (const [pid, marker] of [...started]) await killQemu(pid, marker);
  rmSync(stateDir, { recursive: true, force: true });
});

const guestless = (files: InstanceLayout, ...extra: string[]) => [
  '-machine',
  'q35,accel=tcg',
  '-nodefaults',
  '-no-user-config',
  '-display',
  'none',
  '-m',
  '64',
  '-S',
  '-qmp',
  `unix:${files.qmpSocket},server=on,wait=off`,
  '-daemonize',
  '-pidfile',
  files.pidFile,
  ...extra,
];

/** A daemonized guest-less QEMU for `files`, started by launch() and killed after the test. */
async function startGuestless(t: TestContext, files: InstanceLayout): Promise<number> {
  const pid = await launch('qemu-system-x86_64', guestless(files), files.pidFile, files.qmpSocket);
  started.set(pid, files.qmpSocket);
  t.after(() => killQemu(pid, files.qmpSocket));
  return pid;
}

/** The record of an instance holos started as `pid`, with as much of a spec as a test needs. */
const runningRecord = (
  spec: Partial<instance.InstanceSpec>,
  pid: number,
  extra: Partial<instance.AppliedRecord> = {},
): instance.AppliedRecord => ({
  schema_version: 2,
  spec: spec as instance.InstanceSpec,
  state: 'running',
  pid,
  sshPort: 2222,
  hostPorts: [],
  accel: { kind: 'tcg', hostCpu: 'max' },
  hostPublicKey: 'ssh-ed25519 AAAA h',
  ...extra,
});

const qemuImg = (...args: string[]) => execFileSync('qemu-img', args, { encoding: 'utf8' });

interface ImageInfo {
  filename: string;
  format: string;
  'virtual-size': number;
  'backing-filename'?: string;
  'backing-filename-format'?: string;
}

/** The oracle: qemu-img's view of the whole chain, the image first. */
const backingChain = (path: string) =>
  JSON.parse(qemuImg('info', '--output=json', '--backing-chain', path)) as ImageInfo[];

/** Does the image hold `pattern` in its first 64 KiB? (qemu-io exits 1 when the pattern differs.) */
const holdsPattern = (path: string, pattern: number) =>
  spawnSync('qemu-io', ['-f', 'qcow2', '-c', `read -P ${pattern} 0 64k`, path], { stdio: 'ignore' })
    .status === 0;
const writePattern = (path: string, pattern: number) =>
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P ${pattern} 0 64k`, path], { stdio: 'ignore' });

const MiB = 2 ** 20;

function baseImage(name: string, format: 'qcow2' | 'raw', size = 64 * MiB): ImageSpec {
  const path = join(stateDir, name);
  qemuImg('create', '-q', '-f', format, path, String(size));
  return { name: `./${name}`, path, format, services: [] };
}

test('launch() returns the pid of the daemonized QEMU, and it is ours', async (t) => {
  if (!needsTools(t)) return;
  const files = newInstance();
  const pid = await startGuestless(t, files);
  assert.equal(await readPid(files.pidFile), pid);
  assert.equal(await isOurQemu(pid, files.qmpSocket), true);
  assert.equal(statSync(files.qmpSocket).isSocket(), true);
});

test('launch() with a bad argument fails with what QEMU said (apply names the instance)', async (t) => {
  if (!needsTools(t)) return;
  const files = newInstance();
  t.after(async () => {
    // Were the argument ever accepted, this QEMU must not outlive the test.
    const pid = await readPid(files.pidFile);
    if (pid !== undefined) await killQemu(pid, files.qmpSocket);
  });
  const args = guestless(files, '-no-such-option');
  const attempt = launch('qemu-system-x86_64', args, files.pidFile, files.qmpSocket);
  await assert.rejects(attempt, (error) => {
    assert.ok(error instanceof UserError);
    assert.ok(error.message.startsWith('QEMU did not start: '), error.message);
    assert.match(error.message, /-no-such-option: invalid option/);
    return true;
  });
  assert.equal(await readPid(files.pidFile), undefined);
});

test('stopGracefully(): a guest that ignores ACPI is terminated after the grace period', async (t) => {
  if (!needsTools(t)) return;
  const files = newInstance();
  const pid = await startGuestless(t, files);
  const steps: string[] = [];
  const request = { pid, marker: files.qmpSocket, qmpSocket: files.qmpSocket, graceMs: 300 };
  assert.equal(await stopGracefully({ ...request, step: (s) => steps.push(s) }), 'terminated');
  assert.deepEqual(steps, [
    'ACPI shutdown requested; waiting up to 300ms',
    'still running after 300ms; sending SIGTERM',
  ]);
  assert.equal(await isOurQemu(pid, files.qmpSocket), false);

  const later: string[] = [];
  assert.equal(await stopGracefully({ ...request, step: (s) => later.push(s) }), 'not-running');
  assert.deepEqual(later, []);
});

test('stopGracefully(): a QEMU that answers nothing, not even SIGTERM, is killed', async (t) => {
  if (!needsTools(t)) return;
  const files = newInstance();
  const pid = await startGuestless(t, files);
  // A stopped process neither answers QMP nor acts on SIGTERM; only SIGKILL ends it.
  process.kill(pid, 'SIGSTOP');
  const steps: string[] = [];
  const outcome = await stopGracefully({
    pid,
    marker: files.qmpSocket,
    qmpSocket: files.qmpSocket,
    graceMs: 300,
    step: (s) => steps.push(s),
    waits: { qmpMs: 300, signalMs: 300 }, // each is waited out in full: nothing answers
  });
  assert.equal(outcome, 'killed');
  assert.match(steps[0]!, /^QMP did not take the shutdown request \(.+\)$/);
  assert.deepEqual(steps.slice(1), [
    'still running after 300ms; sending SIGTERM',
    'still running 300ms after SIGTERM; sending SIGKILL',
  ]);
  assert.equal(await isOurQemu(pid, files.qmpSocket), false);
});

test('instance.observe(): a live QEMU has a pid and a QMP status; a dead or foreign pid has none', async (t) => {
  if (!needsTools(t)) return;
  const files = newInstance();
  assert.deepEqual(await instance.observe(files), {});

  const pid = await startGuestless(t, files);
  const live = await instance.observe(files);
  assert.equal(live.pid, pid);
  assert.ok(live.status === 'prelaunch' || live.status === 'paused', live.status);
  assert.equal((await inspect('vm', files, { qmp: true })).state, live.status);

  await killQemu(pid, files.qmpSocket);
  while (await isOurQemu(pid, files.qmpSocket)) await new Promise((resolve) => setTimeout(resolve, 20));
  const dead = await instance.observe(files);
  assert.equal(dead.pid, undefined);
  assert.equal((await inspect('vm', files)).state, 'absent');

  // A pid file naming a live process that is not this instance's QEMU (a reused pid).
  writeFileSync(files.pidFile, `${process.pid}\n`);
  assert.equal((await instance.observe(files)).pid, undefined);
});

test('instance.stop(): stops a live QEMU and records the instance as stopped', async (t) => {
  if (!needsTools(t)) return;
  const files = newInstance();
  const pid = await startGuestless(t, files);
  const record = runningRecord({ name: 'vm' }, pid, { schema_version: 1 });
  await instance.writeRecord(files, record);
  const seen = await instance.observe(files);
  assert.deepEqual(seen.applied, record);

  const steps: string[] = [];
  assert.equal(await instance.stop(files, seen, 300, (s) => steps.push(s)), 'terminated');
  assert.equal(steps.length, 2);
  const stopped = await instance.observe(files);
  assert.equal(stopped.pid, undefined);
  const { pid: _pid, ...withoutPid } = record;
  assert.deepEqual(stopped.applied, { ...withoutPid, state: 'stopped' });
  assert.equal((await inspect('vm', files)).state, 'stopped');
});

test('overlay.create and overlay.observe agree with qemu-img, also when disk_size grows the disk', async (t) => {
  if (!needsTools(t)) return;
  const qcow2Base = baseImage('base.qcow2', 'qcow2');
  const rawBase = baseImage('base.raw', 'raw');
  for (const [base, size] of [
    [qcow2Base, undefined],
    [qcow2Base, 128 * MiB],
    [rawBase, undefined],
    [rawBase, 96 * MiB],
  ] as const) {
    const spec = overlaySpec('vm', base, size);
    const label = `${base.format} base, size ${size}`;
    await overlay.create(spec, 'qemu-img', stateDir);
    const seen = await overlay.observeOverlay(spec);
    const [disk, backing] = backingChain(spec.path);
    assert.equal(disk!.format, 'qcow2', label);
    assert.equal(seen.exists, true, label);
    assert.equal(seen.backingFile, disk!['backing-filename'], label);
    assert.equal(seen.backingFile, base.path, label);
    assert.equal(seen.backingFormat, disk!['backing-filename-format'], label);
    assert.equal(seen.backingFormat, base.format, label);
    assert.equal(seen.virtualSize, disk!['virtual-size'], label);
    assert.equal(seen.virtualSize, size ?? 64 * MiB, label);
    assert.equal(backing!.filename, base.path, label);
    assert.equal(backing!.format, base.format, label);
    assert.deepEqual(diskDiff(spec, seen, 'running'), [], label);
  }
});

test('overlay.diff: no disk → create, another base → recreate; create starts the disk over', async (t) => {
  if (!needsTools(t)) return;
  const oldBase = baseImage('old.qcow2', 'qcow2');
  const newBase = baseImage('new.qcow2', 'qcow2');
  const spec = overlaySpec('vm-x', oldBase);
  assert.deepEqual(diskDiff(spec, await overlay.observeOverlay(spec), 'running'), [
    { kind: 'overlay', name: 'vm-x', instance: 'vm-x', verb: 'create', reason: 'no root disk' },
  ]);
  await overlay.create(spec, 'qemu-img', stateDir);
  writePattern(spec.path, 0xab);

  const moved = { ...spec, base: newBase };
  assert.deepEqual(diskDiff(moved, await overlay.observeOverlay(spec), 'running'), [
    {
      kind: 'overlay',
      name: 'vm-x',
      instance: 'vm-x',
      verb: 'recreate',
      reason: `the root disk is based on ${oldBase.path}, not ${newBase.path}`,
    },
  ]);
  assert.deepEqual(diskDiff(moved, await overlay.observeOverlay(spec), 'stopped'), []);

  assert.equal(holdsPattern(spec.path, 0xab), true);
  await overlay.create(moved, 'qemu-img', stateDir);
  assert.equal(holdsPattern(spec.path, 0xab), false);
  assert.equal(holdsPattern(spec.path, 0), true);
  assert.equal(backingChain(spec.path)[0]!['backing-filename'], newBase.path);
  assert.equal(holdsPattern(oldBase.path, 0), true);
});

test('overlay: a base that moved (renamed, or copied and deleted) is rebased with the data kept', async (t) => {
  if (!needsTools(t)) return;
  const base = baseImage('moving.qcow2', 'qcow2');
  const spec = overlaySpec('vm-m', base);
  await overlay.create(spec, 'qemu-img', stateDir);
  writePattern(spec.path, 0xcd);
  const inode = statSync(spec.path).ino;
  const rebased = async (to: string, how: string) => {
    const moved = { ...spec, base: { ...base, path: to } };
    const seen = await overlay.observeOverlay(moved);
    assert.equal(seen.base, 'same', how);
    assert.deepEqual(diskDiff(moved, seen, 'running'), [
      {
        kind: 'overlay',
        name: 'vm-m',
        instance: 'vm-m',
        verb: 'rebase',
        reason: `the base image moved from ${seen.backingFile} to ${to}; same file`,
      },
    ]);
    await overlay.rebase(moved, 'qemu-img', stateDir);
    assert.deepEqual(diskDiff(moved, await overlay.observeOverlay(moved), 'running'), [], how);
    assert.equal(backingChain(spec.path)[0]!['backing-filename'], to, how);
    assert.equal(statSync(spec.path).ino, inode, `${how}: the same disk`);
    assert.equal(holdsPattern(spec.path, 0xcd), true, `${how}: its data kept`);
    return moved;
  };
  // A rename: the same inode.
  const renamed = join(dirname(base.path), 'renamed.qcow2');
  renameSync(base.path, renamed);
  const first = await rebased(renamed, 'renamed');
  // A copy to another file, the original gone: the same size and digest.
  const copied = join(dirname(base.path), 'copied.qcow2');
  copyFileSync(renamed, copied);
  rmSync(renamed);
  await rebased(copied, 'copied');
  // While the old file is still there, another path is another image: recreate.
  const other = baseImage('other.qcow2', 'qcow2');
  const seen = await overlay.observeOverlay({ ...first, base: other });
  assert.equal(seen.base, 'other');
  assert.equal(diskDiff({ ...first, base: other }, seen, 'running')[0]!.verb, 'recreate');
});

test('volume.create makes a qcow2 of the size once, and never shrinks or replaces it', async (t) => {
  if (!needsTools(t)) return;
  const spec = { name: 'data', path: layout.volume('data'), size: 64 * MiB, services: [] };
  assert.deepEqual(await volume.observeVolume(spec.path), { exists: false });
  await volume.create(spec, 'qemu-img');
  const [info] = backingChain(spec.path);
  assert.equal(info!.format, 'qcow2');
  assert.equal(info!['virtual-size'], 64 * MiB);
  assert.equal(info!['backing-filename'], undefined);
  assert.deepEqual(await volume.observeVolume(spec.path), { exists: true, virtualSize: 64 * MiB });
  assert.equal(statSync(layout.volumesDir).mode & 0o777, 0o700);

  writePattern(spec.path, 0x5a);
  const before = statSync(spec.path);
  for (const size of [64 * MiB, 32 * MiB, 128 * MiB]) {
    await volume.create({ ...spec, size }, 'qemu-img');
    const now = statSync(spec.path);
    assert.equal(now.ino, before.ino, `size ${size}`);
    assert.equal(now.mtimeMs, before.mtimeMs, `size ${size}`);
    assert.equal(backingChain(spec.path)[0]!['virtual-size'], 64 * MiB, `size ${size}`);
    assert.equal(holdsPattern(spec.path, 0x5a), true, `size ${size}`);
  }
  assert.deepEqual(readdirSync(layout.volumesDir), ['data.qcow2']);
});

const demo = `
name: rt
services:
  web:
    image: ./base.qcow2
    replicas: 2
    cloud_init:
      runcmd: ["echo hello"]
`;

const isoinfo = (...args: string[]) => execFileSync('isoinfo', args, { encoding: 'utf8' });
const bytesOf = (content: string | Uint8Array) =>
  typeof content === 'string' ? Buffer.from(content) : Buffer.from(content);

test('seed.write writes seed-<hash8>.iso that isoinfo reads back, and removes older seeds', async (t) => {
  if (!needsTools(t)) return;
  const desired = desiredState(resolveProject(loadText(demo)), layout, {
    project: 'ssh-ed25519 AAAA project',
    hosts: { 'web-0': { privateKey: 'k', publicKey: 'ssh-ed25519 B h' } },
  });
  const [web0, web1] = desired.instances;
  const spec = web0!.seed;
  const dir = layout.instance('web-0').dir;
  mkdirSync(dir, { recursive: true });
  // Older seeds of this instance go; files that only look similar, and other instances, stay.
  const keep = ['seed-notes.txt', 'seed-0123456789.iso', 'seed-xyzxyzxy.iso', 'disk.qcow2'];
  for (const name of ['seed-0badc0de.iso', 'seed-12345678.iso', ...keep])
    writeFileSync(join(dir, name), 'old');
  mkdirSync(layout.instance('web-1').dir, { recursive: true });
  writeFileSync(join(layout.instance('web-1').dir, 'seed-0badc0de.iso'), 'other');

  const observeSeed = () => seed.seed.observe('web-0', spec, layout);
  const path = spec.path!;
  assert.deepEqual(await observeSeed(), { exists: false });
  await seed.write(spec);
  assert.equal(basename(path), `seed-${spec.hash!.slice(0, 8)}.iso`);
  assert.equal(path, join(dir, basename(path)));
  assert.deepEqual(await observeSeed(), { exists: true });
  assert.deepEqual(seed.seed.diff('web-0', spec, { exists: true }, targetOnly('running')), []);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(dir).sort(), [basename(path), ...keep].sort());
  assert.deepEqual(readdirSync(layout.instance('web-1').dir), ['seed-0badc0de.iso']);

  assert.match(isoinfo('-d', '-i', path), /^Volume id: cidata$/m);
  assert.deepEqual(isoinfo('-J', '-f', '-i', path).trim().split('\n').sort(), [
    '/meta-data',
    '/network-config',
    '/user-data',
  ]);
  for (const file of seed.seedFiles(spec, spec.keys!))
    assert.deepEqual(
      execFileSync('isoinfo', ['-J', '-i', path, '-x', `/${file.name}`]),
      bytesOf(file.content),
      file.name,
    );
  assert.match(isoinfo('-J', '-i', path, '-x', '/user-data'), /echo hello/);
  assert.notEqual(web1!.seed.hash, spec.hash);

  // Writing it again (a crash before the plan was done) is harmless.
  await seed.write(spec);
  assert.equal(readFileSync(path).length % 2048, 0);
  assert.deepEqual(readdirSync(dir).sort(), [basename(path), ...keep].sort());
});

test('a seed named by an older holos (by its content) is compared by rendering once, then renamed', async (t) => {
  if (!needsTools(t)) return;
  const upgradeLayout = projectLayout(stateDir, 'upgrade');
  const desired = desiredState(resolveProject(loadText(demo)), upgradeLayout, {
    project: 'ssh-ed25519 AAAA project',
    hosts: { 'web-0': { privateKey: 'k', publicKey: 'ssh-ed25519 B h' } },
  });
  const spec = desired.instances[0]!.seed;
  const running = { ...targetOnly('running'), project: desired.project };
  mkdirSync(spec.layout.dir, { recursive: true });
  // What holos wrote before: the same files, named by the hash of their rendered content.
  const files = seed.seedFiles(spec, spec.keys!);
  const older = spec.layout.seed(seedHash(files));
  writeFileSync(older, buildSeedIso(files));
  assert.notEqual(older, spec.path);

  const observed = await seed.seed.observe('web-0', spec, upgradeLayout);
  assert.deepEqual(observed, { exists: false, namedByContent: true });
  const [write] = seed.seed.diff('web-0', spec, observed, running);
  assert.deepEqual(
    { verb: write?.verb, cause: write?.cause, reason: write?.reason },
    {
      verb: 'write',
      cause: 'upgraded',
      reason: 'named by an older holos; the same content under its new name (no VM action)',
    },
  );
  await seed.write(spec);
  assert.deepEqual(readFileSync(spec.path!), buildSeedIso(files));
  assert.deepEqual(
    readdirSync(spec.layout.dir).filter((n) => n.startsWith('seed-')),
    [basename(spec.path!)],
  );
  // From now on, the file of its name is there: nothing is rendered, nothing planned.
  assert.deepEqual(await seed.seed.observe('web-0', spec, upgradeLayout), { exists: true });
  assert.deepEqual(seed.seed.diff('web-0', spec, { exists: true }, running), []);

  // A seed of other content (so of another name) is no upgrade: the hosts table changed.
  rmSync(spec.path!);
  writeFileSync(spec.layout.seed('0badc0de'), 'other content');
  const other = await seed.seed.observe('web-0', spec, upgradeLayout);
  assert.deepEqual(other, { exists: false });
  assert.equal(seed.seed.diff('web-0', spec, other, running)[0]?.cause, 'hosts-changed');
});

test('instance.remove deletes the instance directory and never the volumes', async (t) => {
  if (!needsTools(t)) return;
  const files = newInstance();
  mkdirSync(files.hostKey, { recursive: true });
  for (const path of [files.overlay, files.applied, files.pidFile, join(files.hostKey, 'id_ed25519')])
    writeFileSync(path, 'x');
  const spec = { name: 'keep', path: layout.volume('keep'), size: 16 * MiB, services: [] };
  await volume.create(spec, 'qemu-img');
  const before = readFileSync(spec.path);

  await instance.remove(files);
  assert.throws(() => statSync(files.dir), { code: 'ENOENT' });
  assert.deepEqual(readFileSync(spec.path), before);
  assert.ok(readdirSync(layout.volumesDir).includes('keep.qcow2'));
  await instance.remove(files); // already gone: nothing to do
});

test('executors leave what observe reads: once keys, volume, disks and seeds exist, only the VMs are left', async (t) => {
  if (!needsTools(t)) return;
  const resolved = resolveProject(
    loadText(`
name: trip
services:
  db:
    image: ./base.qcow2
    volumes: ["data:/var/lib/data"]
  web:
    image: ./base.qcow2
    depends_on: [db]
volumes:
  data: { size: 32M }
`),
  );
  qemuImg('create', '-q', '-f', 'qcow2', join(resolved.dir, 'base.qcow2'), String(64 * MiB));
  const tripLayout = projectLayout(stateDir, 'trip');
  const targets = { services: { db: 'running', web: 'running' }, strays: 'absent' } as const;
  const planNow = async () => {
    const desired = desiredState(resolved, tripLayout, await observeKeys(resolved, tripLayout));
    return { desired, plan: plan(desired, await observeState(desired), targets) };
  };
  const verbs = (p: Plan) => p.actions.map((a) => `${a.kind} ${a.verb} ${a.name}`);

  const fresh = await planNow();
  assert.deepEqual(verbs(fresh.plan), [
    'keypair generate trip',
    'volume create data',
    'segment start default',
    'keypair generate db-0 host key',
    'overlay create db-0',
    'seed write db-0',
    'instance create db-0',
    'keypair generate web-0 host key',
    'overlay create web-0',
    'seed write web-0',
    'instance create web-0',
  ]);

  await keypair.generate(fresh.desired.keypair);
  for (const spec of fresh.desired.volumes) await volume.create(spec, 'qemu-img');
  const switchPid = await startSwitch(tripLayout, 'default');
  t.after(() => stopSwitch(tripLayout, 'default', switchPid));
  for (const d of fresh.desired.instances) await keypair.generate(d.hostKey);
  // Seeds rendered with the real keys now, as converge does after the preparation.
  const prepared = await planNow();
  for (const d of prepared.desired.instances) {
    await overlay.create(d.overlay, 'qemu-img', stateDir);
    await seed.write(d.seed);
  }
  const made = await planNow();
  assert.deepEqual(
    made.plan.actions.map((a) => `${a.kind} ${a.verb} ${a.name}: ${a.reason}`),
    ['instance start db-0: no record of its last start', 'instance start web-0: no record of its last start'],
  );
  assert.equal(made.desired.instances[0]!.seed.path, prepared.desired.instances[0]!.seed.path);

  // Suppose the first start failed: down still removes what was made, and then has nothing to do.
  const down = { services: { db: 'absent', web: 'absent' }, strays: 'absent' } as const;
  const teardown = plan(made.desired, await observeState(made.desired), down);
  assert.deepEqual(verbs(teardown), [
    'instance remove db-0',
    'instance remove web-0',
    'segment remove default',
  ]);
  for (const action of teardown.actions)
    if (action.kind === 'segment') await stopSwitch(tripLayout, action.name, switchPid);
    else await instance.remove(tripLayout.instance(action.name));
  assert.deepEqual(plan(made.desired, await observeState(made.desired), down).actions, []);
  assert.deepEqual(readdirSync(tripLayout.dir), []);
  assert.deepEqual(readdirSync(tripLayout.volumesDir), ['data.qcow2']);
});

test('a relative state dir still gives absolute paths, so a catalog image can back an overlay', async (t) => {
  if (!needsTools(t)) return;
  // qemu-img reads a relative backing file name relative to the overlay's own directory.
  const relLayout = projectLayout(relative(process.cwd(), join(stateDir, 'rel')), 'rel');
  const resolved = resolveProject(loadText('name: rel\nservices:\n  app:\n    image: debian:12\n'));
  const [app] = desiredState(resolved, relLayout, { hosts: {} }).instances;
  for (const path of [relLayout.dir, relLayout.volume('x'), app!.overlay.path, app!.overlay.base.path])
    assert.ok(isAbsolute(path), path);
  mkdirSync(dirname(app!.overlay.base.path), { recursive: true });
  qemuImg('create', '-q', '-f', 'qcow2', app!.overlay.base.path, String(16 * MiB));
  await overlay.create(app!.overlay, 'qemu-img', stateDir);
  assert.deepEqual(diskDiff(app!.overlay, await overlay.observeOverlay(app!.overlay), 'running'), []);
  assert.equal(backingChain(app!.overlay.path)[1]!.filename, app!.overlay.base.path);
});

test('apply: stops wait for no start slot, and a dependent still stops before what it depends on', async (t) => {
  if (!needsTools(t)) return;
  const resolved = resolveProject(
    loadText(`
name: halt
services:
  db:
    image: ./base.qcow2
    stop_grace_period: 300ms
  web:
    image: ./base.qcow2
    replicas: 4
    depends_on: [db]
    stop_grace_period: 300ms
`),
  );
  const haltLayout = projectLayout(stateDir, 'halt');
  for (const { name } of resolved.instances) {
    const files = haltLayout.instance(name);
    mkdirSync(files.dir, { recursive: true });
    await startGuestless(t, files); // held (-S): it ignores ACPI, so each stop waits out its grace
  }
  const desired = desiredState(resolved, haltLayout, await observeKeys(resolved, haltLayout));
  const observed = await observeState(desired);
  const stops = plan(desired, observed, { services: { db: 'stopped', web: 'stopped' } });
  assert.deepEqual(stops.actions.map((a) => `${a.verb} ${a.name} after [${a.after.join(', ')}]`).sort(), [
    'stop db-0 after [instance:web-0, instance:web-1, instance:web-2, instance:web-3]',
    'stop web-0 after []',
    'stop web-1 after []',
    'stop web-2 after []',
    'stop web-3 after []',
  ]);

  const events: string[] = [];
  const result = await apply(stops, {
    desired,
    observed,
    qemu: qemuBinaries(),
    accel: () => Promise.reject(new Error('nothing starts')),
    emit: (event) => {
      if (event.type === 'action') events.push(`${event.phase} ${event.action.name}`);
    },
    startLimit: 1,
  });
  assert.deepEqual(result.problems, []);
  // One start slot, yet the four web stops all began before any of them ended.
  const firstDone = events.findIndex((e) => e.startsWith('done'));
  assert.deepEqual(events.slice(0, firstDone).sort(), [
    'start web-0',
    'start web-1',
    'start web-2',
    'start web-3',
  ]);
  // db stopped only once every web replica had.
  assert.deepEqual(events.slice(-2), ['start db-0', 'done db-0']);
  for (const { name } of resolved.instances)
    assert.equal((await inspect(name, haltLayout.instance(name))).pid, undefined, name);
});

test('startLimit: HOLOS_START_LIMIT, else no limit; nonsense is a user error', () => {
  assert.equal(startLimit({ HOLOS_START_LIMIT: '16' }), 16);
  assert.equal(startLimit({}), Infinity);
  for (const bad of ['0', '-1', '2.5', 'many'])
    assert.throws(() => startLimit({ HOLOS_START_LIMIT: bad }), UserError, bad);
});

test("a no-op up's status table is the plan's observation: the same rows as ps asking again", async (t) => {
  if (!needsTools(t)) return;
  const resolved = resolveProject(
    loadText(`
name: seen
services:
  db:
    image: ./base.qcow2
  web:
    image: ./base.qcow2
    replicas: 2
    ports: ["8080:80"]
`),
  );
  const seenLayout = projectLayout(stateDir, 'seen');
  const desired = desiredState(resolved, seenLayout, await observeKeys(resolved, seenLayout));
  for (const { name } of resolved.instances) {
    const files = seenLayout.instance(name);
    mkdirSync(files.dir, { recursive: true });
    // web-1 was stopped; the others run (held, so QMP says `prelaunch`).
    const pid = name === 'web-1' ? undefined : await startGuestless(t, files);
    await instance.writeRecord(files, {
      schema_version: 2,
      spec: instance.normalise(desired.specs.instance.get(name)!),
      state: pid ? 'running' : 'stopped',
      ...(pid && { pid, startedAt: '2026-12-02T00:00:00.000Z' }),
      sshPort: 40022,
      hostPorts: name === 'db-0' ? [] : [18080],
      accel: { kind: 'tcg', hostCpu: 'max' },
      hostPublicKey: 'ssh-ed25519 AAAA h',
    });
  }
  const observed = await observeState(desired);
  const rows = await observedStatus(seenLayout, observed.instance);
  assert.deepEqual(rows, await projectStatus(seenLayout));
  assert.deepEqual(
    rows.map((r) => `${r.instance} ${r.state} ${r.pid === null ? 'no pid' : 'pid'}`),
    ['db-0 prelaunch pid', 'web-0 prelaunch pid', 'web-1 stopped no pid'],
  );
});

test("instance.start: a forward port taken between holos's probe and QEMU's bind is picked again", async (t) => {
  if (!needsTools(t)) return;
  const resolved = resolveProject(
    loadText(`
name: race
services:
  app:
    image: ./base.qcow2
    ports: ["0:80"]
    vm: { memory_mb: 128, extra_args: [-S] }
`),
  );
  qemuImg('create', '-q', '-f', 'qcow2', join(resolved.dir, 'base.qcow2'), String(16 * MiB));
  const raceLayout = projectLayout(stateDir, 'race');
  const desire = async () => desiredState(resolved, raceLayout, await observeKeys(resolved, raceLayout));
  const fresh = await desire();
  await keypair.generate(fresh.keypair);
  await keypair.generate(fresh.instances[0]!.hostKey);
  // Seeds are named with the real keys, as converge does once the keys exist.
  const [app] = (await desire()).instances;
  await overlay.create(app!.overlay, 'qemu-img', stateDir);
  await seed.write(app!.seed);
  const hostKey = await keypair.read({ dir: app!.hostKey.dir });

  // Another process holds the first port holos is given, as it would after the probe let go.
  const taken = createServer();
  await new Promise<void>((done) => taken.listen({ port: 0, host: '127.0.0.1' }, done));
  t.after(() => taken.close());
  const takenPort = (taken.address() as AddressInfo).port;
  const handed: number[] = [];
  const pickPort = async () => {
    const port = handed.length === 0 ? takenPort : await freePort();
    handed.push(port);
    return port;
  };
  const files = raceLayout.instance('app-0');
  const record = await instance.start({
    spec: app!.spec,
    layout: files,
    seedPath: app!.seed.path!,
    volumeFiles: {},
    accel: { kind: 'tcg', hostCpu: 'max' },
    qemu: qemuBinaries().system,
    hostPublicKey: hostKey!.publicKey,
    pickPort,
  });
  t.after(() => process.kill(record.pid!, 'SIGKILL'));
  assert.equal(handed[0], takenPort);
  assert.equal(handed.length, 4, 'the SSH port and the forward, twice: every port picked again');
  assert.ok(
    !record.hostPorts.includes(takenPort) && record.sshPort !== takenPort,
    'the taken port is not used',
  );
  assert.ok(await isOurQemu(record.pid!, files.qmpSocket));
});

test('waitUntilReady: the phases of a live QEMU from its serial log, and each way a wait fails', async (t) => {
  if (!needsTools(t)) return;
  const marker = (status: object) =>
    `\nholos: first boot finished ${JSON.stringify({ v1: { datasource: 'NoCloud', ...status } })}\n`;
  const running =
    "[ 40.1] cloud-init[252]: Cloud-init v. 22.4.2 running 'init-local' at Wed. Up 39 seconds.\n";
  const finished = '[ 74.8] cloud-init[345]: Cloud-init v. 22.4.2 finished at Wed. Up 74 seconds\n';
  /** A running QEMU (held, then continued) with a record of a first boot begun at offset 0. */
  async function booting(log: string) {
    const files = newInstance();
    const pid = await startGuestless(t, files);
    const { QmpClient } = await import('../src/observe/qmp.js');
    const qmp = await QmpClient.connect(files.qmpSocket, { timeoutMs: 5_000 });
    await qmp.execute('cont');
    qmp.close();
    const name = basename(files.dir);
    await instance.writeRecord(
      files,
      runningRecord({ name, service: 'vm', index: 0 }, pid, {
        startedAt: new Date().toISOString(),
        first_boot: { state: 'pending', serial_offset: 0 },
        boot_offset: 0,
      }),
    );
    writeFileSync(files.serialLog, log);
    return { files, name, pid };
  }
  const { waitUntilReady } = await import('../src/reconcile/ready.js');
  const phases: string[] = [];
  const emit = (e: { type: string; instance?: string; phase?: string }) => {
    if (e.type === 'phase') phases.push(`${e.instance} ${e.phase}`);
  };

  // provisioning, then ready once holos's line comes.
  const ok = await booting(running);
  const waiting = waitUntilReady(layout, [ok.name], { emit, pollMs: 20 });
  while (!phases.includes(`${ok.name} provisioning`)) await new Promise((r) => setTimeout(r, 10));
  writeFileSync(ok.files.serialLog, `${running}${finished}${marker({ init: { errors: [] } })}`);
  assert.deepEqual(await waiting, []);
  assert.deepEqual(phases.splice(0), [`${ok.name} provisioning`, `${ok.name} ready`]);

  // degraded: cloud-init's reason and where to look.
  const bad = await booting(
    `${running}${marker({ 'modules-final': { errors: ["('scripts-user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))"] } })}`,
  );
  assert.deepEqual(await waitUntilReady(layout, [bad.name], { emit, pollMs: 20 }), [
    `${bad.name} is degraded: cloud-init: modules-final: scripts-user failed: Runparts: 1 failures (runcmd) in 1 attempted commands; see holos logs ${bad.name}`,
  ]);
  // cloud-init finished and holos's line never came: the user-data was not applied.
  const unapplied = await booting(`${running}${finished}`);
  assert.deepEqual(await waitUntilReady(layout, [unapplied.name], { emit, pollMs: 20, markerGraceMs: 50 }), [
    `${unapplied.name} is failed: cloud-init: it finished without running holos's first-boot step: the user-data was not applied; see holos logs ${unapplied.name}`,
  ]);
  // Still booting at the timeout; and a QEMU that is gone ends the wait at once.
  const slow = await booting('');
  assert.deepEqual(await waitUntilReady(layout, [slow.name], { emit, pollMs: 20, timeoutMs: 100 }), [
    `${slow.name} is still booting after 100ms; a longer --wait-timeout waits longer`,
  ]);
  await killQemu(slow.pid, slow.files.qmpSocket);
  while (await isOurQemu(slow.pid, slow.files.qmpSocket)) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(await waitUntilReady(layout, [slow.name], { emit, pollMs: 20 }), [
    `${slow.name} is exited, not running; see holos logs ${slow.name}`,
  ]);
});
