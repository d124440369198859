// The end-to-end harness: real QEMU guests booted from the project's own test image
// (scripts/build-test-image.sh). It finds or builds the image, decides KVM or TCG with a real
// probe, makes throw-away project and state directories, and makes sure no QEMU it started
// (or that the holos under test started in its state directory) outlives the test process.
//
// Without QEMU or the image, e2e tests skip with a visible reason locally and fail under CI.

import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { Duplex } from 'node:stream';
import { test, type TestContext } from 'node:test';
import type { InstanceStatus } from '../../src/access/status.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import ssh2 from 'ssh2';
import { isOurQemu, readPid } from '../../src/observe/process.js';
import { escapeOption } from '../../src/qemu/argv.js';
import { freePort } from '../../src/observe/ports.js';
import { QmpClient } from '../../src/observe/qmp.js';
import type { Stamped } from '../../src/events.js';
import { execCollect, publicKeyBlob } from '../../src/ssh/exec.js';

// ssh2 is CommonJS: named imports crash at run time.
const { Client } = ssh2;
type SshClient = InstanceType<typeof Client>;

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** How long a guest may take to boot (login prompt, sshd, cloud-init) under TCG. */
export const BOOT_TIMEOUT_MS = 6 * 60_000;
/** A whole e2e test: boot, checks, shutdown; generous for TCG on a busy 2-core runner. */
export const E2E_TEST_TIMEOUT_MS = 20 * 60_000;
/** At most this many guests run at once (per test process). */
export const MAX_GUESTS = 2;

const isCi = () => process.env.CI === 'true';

// ---------------------------------------------------------------------------------------------
// Child processes

export interface RunResult {
  /** Exit status; null when killed by a signal (see `signal`). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  /** Merged over process.env. */
  env?: NodeJS.ProcessEnv;
  input?: string;
  /** SIGKILL after this long (default 10 minutes). */
  timeoutMs?: number;
  /** Copy the child's stderr to ours as it comes (long builds). */
  echoStderr?: boolean;
}

/** Runs a command to its end and collects its output; never rejects for a non-zero status. */
export function run(command: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      if (opts.echoStderr) process.stderr.write(chunk);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 10 * 60_000);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => undefined); // a child that exits without reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** Like run(), but a non-zero exit is an error carrying the command's stderr. */
export async function runOk(
  command: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const result = await run(command, args, opts);
  if (result.code !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited ${result.code ?? result.signal}: ${result.stderr.trim().slice(-2000)}`,
    );
  }
  return result;
}

/** The built CLI (`node dist/cli.js`), the way a user runs it. `npm run build` first. */
export function runHolos(
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return run(process.execPath, [join(repoRoot, 'dist', 'cli.js'), ...args], opts);
}

// ---------------------------------------------------------------------------------------------
// Binaries and the test image

export interface QemuTools {
  system: string;
  img: string;
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

/** `$HOLOS_QEMU_SYSTEM` / `$HOLOS_QEMU_IMG` or the binaries on PATH; undefined if either is missing. */
export function qemuTools(): QemuTools | undefined {
  const system = process.env.HOLOS_QEMU_SYSTEM || onPath('qemu-system-x86_64');
  const img = process.env.HOLOS_QEMU_IMG || onPath('qemu-img');
  return system && img ? { system, img } : undefined;
}

const buildScript = join(repoRoot, 'scripts', 'build-test-image.sh');

/** The kernel the build script copies out of the guest, next to the image. */
export function kernelFor(image: string): string {
  return image.replace(/\.qcow2$/, '.vmlinuz');
}

let imagePromise: Promise<string | undefined> | undefined;

/**
 * The test image's path if it is built (image and kernel). If not, it is built when
 * `CI=true` or `HOLOS_BUILD_TEST_IMAGE=1` (needs root or password-less sudo; ~1-3 min),
 * else undefined. Cached per process.
 */
export function testImage(): Promise<string | undefined> {
  imagePromise ??= (async () => {
    const printed = await runOk('bash', [buildScript, '--print-path']);
    const image = printed.stdout.trim();
    if (existsSync(image) && existsSync(kernelFor(image))) return image;
    if (!isCi() && process.env.HOLOS_BUILD_TEST_IMAGE !== '1') return undefined;
    console.error(`# e2e: building the test image (${basename(image)}); this takes a few minutes`);
    const built = await runOk('bash', [buildScript], { echoStderr: true, timeoutMs: 30 * 60_000 });
    const path = built.stdout.trim().split('\n').pop() ?? '';
    if (!existsSync(path) || !existsSync(kernelFor(path))) {
      throw new Error(`scripts/build-test-image.sh printed ${JSON.stringify(path)}, which is not an image`);
    }
    return path;
  })();
  return imagePromise;
}

// ---------------------------------------------------------------------------------------------
// Acceleration: a real probe

export type AccelKind = 'kvm' | 'tcg';

export interface Accel {
  kind: AccelKind;
  /** QEMU arguments selecting it: `-accel kvm -cpu host…` or `-accel tcg -cpu max`. */
  args: string[];
  /** Why KVM was not chosen (for the test log). */
  reason?: string;
}

const tcgAccel = (reason?: string): Accel => ({
  kind: 'tcg',
  args: ['-accel', 'tcg', '-cpu', 'max'],
  reason,
});
const PROBE_TIMEOUT_MS = 8_000;

/**
 * Boots the image's kernel (no initrd, no disk) under KVM with this -cpu. It gets as far as
 * failing to mount a root file system ("VFS: …", "Kernel panic"), which takes well under a
 * second where KVM works; on hosts where nested KVM is broken, QEMU aborts or the kernel hangs.
 */
function probeKernel(qemu: string, kernel: string, cpu: string): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      qemu,
      ['-accel', 'kvm', '-cpu', cpu, '-m', '256', '-nodefaults', '-no-user-config', '-display', 'none',
        '-serial', 'stdio', '-no-reboot', '-kernel', kernel, '-append', 'console=ttyS0 panic=-1'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    ); // prettier-ignore
    const pid = child.pid;
    if (pid !== undefined) registerProcess(pid, kernel);
    let output = '';
    let settled = false;
    const finish = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      if (pid !== undefined) unregisterProcess(pid);
      resolve({ ok, output });
    };
    const seen = () => /VFS: (Cannot open|Unable to mount) root|Kernel panic/.test(output);
    const timer = setTimeout(() => finish(seen()), PROBE_TIMEOUT_MS);
    const listen = (chunk: Buffer) => {
      output += chunk.toString('latin1');
      if (seen()) finish(true);
    };
    child.stdout.on('data', listen);
    child.stderr.on('data', listen);
    child.on('error', (error) => {
      output += error.message;
      finish(false);
    });
    child.on('exit', () => finish(seen()));
  });
}

let accelPromise: Promise<Accel> | undefined;

/**
 * KVM if it really boots the test image's kernel here, else TCG. `HOLOS_ACCEL=kvm|tcg` forces
 * it. Tries `-cpu host`, then `host,-arch-capabilities` (nested hosts that reject that MSR).
 * Cached per process, and in a file beside the test image for this boot of the host.
 */
export function accel(): Promise<Accel> {
  accelPromise ??= (async () => {
    const forced = process.env.HOLOS_ACCEL;
    if (forced === 'tcg') return tcgAccel('HOLOS_ACCEL=tcg');
    if (forced === 'kvm') return { kind: 'kvm', args: ['-accel', 'kvm', '-cpu', 'host'] };
    if (forced) throw new Error(`HOLOS_ACCEL=${forced}: use kvm or tcg`);
    try {
      accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    } catch {
      return tcgAccel('/dev/kvm is missing or not accessible');
    }
    const tools = qemuTools();
    const image = await testImage();
    if (!tools || !image) return tcgAccel('no QEMU or no test image to probe with');
    // Where KVM hangs, the probe waits out its timeout twice: 16 s for every e2e file. The
    // answer holds until the host reboots or QEMU changes, so the files of a run share it.
    const cacheFile = `${kernelFor(image)}.accel.json`;
    const key = [
      tools.system,
      statSync(tools.system).mtimeMs,
      readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
    ].join(':');
    try {
      const cached = JSON.parse(readFileSync(cacheFile, 'utf8')) as { key: string; accel: Accel };
      if (cached.key === key)
        return {
          ...cached.accel,
          reason: cached.accel.reason && `${cached.accel.reason}; probed earlier this boot`,
        };
    } catch {
      // No answer yet (or an unreadable one): probe.
    }
    const probed = await probeKvmWithKernel(tools.system, kernelFor(image));
    await writeFile(cacheFile, JSON.stringify({ key, accel: probed }), { mode: 0o600 }).catch(() => {});
    return probed;
  })();
  return accelPromise;
}

async function probeKvmWithKernel(qemu: string, kernel: string): Promise<Accel> {
  let last = '';
  for (const cpu of ['host', 'host,-arch-capabilities']) {
    const { ok, output } = await probeKernel(qemu, kernel, cpu);
    if (ok) return { kind: 'kvm', args: ['-accel', 'kvm', '-cpu', cpu] };
    last = `-cpu ${cpu}: ${output.includes('Linux version') ? 'the kernel hung' : output.trim().split('\n')[0] || 'no kernel output'}`;
  }
  return tcgAccel(`KVM did not boot a kernel within ${PROBE_TIMEOUT_MS / 1000}s (${last})`);
}

// ---------------------------------------------------------------------------------------------
// The gate

export interface E2eEnv {
  image: string;
  kernel: string;
  qemu: QemuTools;
  accel: Accel;
}

/**
 * Everything an e2e test needs, or undefined after skipping the test with the reason
 * (QEMU or the image missing). Under `CI=true` a missing piece fails the test instead.
 */
export async function e2eGate(t: TestContext): Promise<E2eEnv | undefined> {
  const qemu = qemuTools();
  const missing: string[] = [];
  if (!qemu) missing.push('no qemu-system-x86_64/qemu-img (apt install qemu-system-x86 qemu-utils)');
  const image = await testImage();
  if (!image) missing.push('no test image; run scripts/build-test-image.sh');
  if (!qemu || !image) {
    const reason = `e2e: ${missing.join('; ')}`;
    if (isCi()) throw new Error(`${reason} (CI=true: e2e tests must run)`);
    console.error(`# SKIP ${t.name}: ${reason}`);
    t.skip(reason);
    return undefined;
  }
  const chosen = await accel();
  t.diagnostic(`accel: ${chosen.kind}${chosen.reason ? ` (${chosen.reason})` : ''}`);
  return { image, kernel: kernelFor(image), qemu, accel: chosen };
}

// ---------------------------------------------------------------------------------------------
// Process registry: nothing the harness starts outlives the test process

/** pid → a string its /proc/<pid>/cmdline must contain for the pid to still be ours. */
const registered = new Map<number, string>();
/** State directories whose `*.pid` files name QEMUs to kill in teardown. */
const stateDirs = new Set<string>();
/** Network namespaces to delete. */
const namespaces = new Set<string>();
/** Temporary project roots, removed if the test process is interrupted. */
const tempRoots = new Set<string>();
/** Helper processes that are not QEMU (a mirror in a namespace), killed with the rest. */
const helpers = new Set<ChildProcess>();

export function registerProcess(pid: number, marker: string): void {
  registered.set(pid, marker);
  installSignalHandlers();
}

export function unregisterProcess(pid: number): void {
  registered.delete(pid);
}

/** Every `*.pid` file under `dir` (any depth). */
function pidFilesSync(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return pidFilesSync(path);
    return entry.isFile() && entry.name.endsWith('.pid') ? [path] : [];
  });
}

/**
 * What a QEMU named by this pid file must have on its command line: the instance's socket
 * paths (any `*.sock` next to the pid file), else the instance directory itself.
 */
function markersFor(pidFile: string): string[] {
  const dir = dirname(pidFile);
  let sockets: string[] = [];
  try {
    sockets = readdirSync(dir)
      .filter((name) => name.endsWith('.sock'))
      .map((name) => join(dir, name));
  } catch {
    // gone already
  }
  return sockets.length > 0 ? sockets : [`${dir}/`];
}

function cmdlineSync(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return text ? text.split('\0') : undefined;
  } catch {
    return undefined;
  }
}

/** A project's switch (net/switch-main.ts, dist/switch.js): holos leaves it running as it does QEMU, so teardown kills it too. */
const switchProgram = /\/(switch\.js|switch-main\.ts)$/;

function isQemuWith(pid: number, markers: readonly string[]): boolean {
  const argv = cmdlineSync(pid);
  if (!argv?.[0]?.includes('qemu') && !argv?.some((arg) => switchProgram.test(arg))) return false;
  return markers.some((marker) => argv.some((arg) => arg.includes(marker)));
}

function pidFromFileSync(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The QEMU pids to kill for `scope` (a state dir) or for everything registered. */
function victimsSync(scope?: string): number[] {
  const pids = new Set<number>();
  for (const [pid, marker] of registered) {
    if (scope && !marker.startsWith(scope)) continue;
    if (isQemuWith(pid, [marker])) pids.add(pid);
  }
  for (const dir of scope ? [scope] : stateDirs) {
    for (const file of pidFilesSync(dir)) {
      const pid = pidFromFileSync(file);
      if (pid && isQemuWith(pid, markersFor(file))) pids.add(pid);
    }
  }
  return [...pids];
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** Kills (TERM, then KILL after a grace period) every QEMU of `scope`, or all of them. */
export async function killQemus(scope?: string, graceMs = 3_000): Promise<number[]> {
  const pids = victimsSync(scope);
  for (const pid of pids) signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pids.some((pid) => cmdlineSync(pid)) && Date.now() < deadline) await sleep(100);
  for (const pid of pids) if (cmdlineSync(pid)) signal(pid, 'SIGKILL');
  for (const pid of pids) registered.delete(pid);
  return pids;
}

let handlersInstalled = false;

/** On SIGINT/SIGTERM: kill every QEMU at once (synchronously), delete namespaces and temp dirs, exit. */
function installSignalHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const onSignal = (sig: NodeJS.Signals) => {
    for (const pid of victimsSync()) signal(pid, 'SIGKILL');
    for (const child of helpers) child.kill('SIGKILL');
    for (const name of namespaces) spawnSync('ip', ['netns', 'delete', name], { stdio: 'ignore' });
    for (const root of tempRoots) rmSync(root, { recursive: true, force: true });
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // A test file that ends (or throws) with guests still registered: last chance.
  process.once('exit', () => {
    for (const pid of victimsSync()) signal(pid, 'SIGKILL');
    for (const child of helpers) child.kill('SIGKILL');
  });
}

// ---------------------------------------------------------------------------------------------
// Temporary projects

const failedTests = new WeakSet<TestContext>();

/** Marks a test as failed, so that its project directories are kept for inspection. */
export function markFailed(t: TestContext): void {
  failedTests.add(t);
}

export interface TempProject {
  /** The project directory (where holos.yaml goes). */
  dir: string;
  /** `$HOLOS_STATE_DIR` for this test, mode 0700. */
  stateDir: string;
  /** process.env plus HOLOS_STATE_DIR. */
  env: NodeJS.ProcessEnv;
  /** Writes a file under the project directory. */
  write(name: string, content: string): Promise<string>;
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
}

async function printSerialLogs(root: string): Promise<void> {
  for (const file of await filesUnder(root)) {
    if (!/(serial|console)[^/]*\.log$/.test(basename(file))) continue;
    // eslint-disable-next-line no-control-regex -- terminal colour codes in systemd's boot output
    const lines = (await readFile(file, 'latin1')).replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').split('\n');
    console.error(`# --- last 40 lines of ${file} ---\n${lines.slice(-41).join('\n')}\n# ---`);
  }
}

/**
 * A temporary project directory and state directory. In teardown, every QEMU under the state
 * directory is killed; the directories are removed, unless the test failed (e2eTest or
 * markFailed tells): then they stay, and the last 40 lines of each serial log are printed.
 */
export async function tempProject(t: TestContext): Promise<TempProject> {
  const root = await mkdtemp(join(tmpdir(), 'holos-e2e-'));
  await chmod(root, 0o700);
  const dir = join(root, 'project');
  const stateDir = join(root, 'state');
  await mkdir(dir);
  await mkdir(stateDir, { mode: 0o700 });
  stateDirs.add(stateDir);
  tempRoots.add(root);
  installSignalHandlers();
  t.after(async () => {
    const killed = await killQemus(stateDir);
    if (killed.length > 0) console.error(`# e2e teardown: killed QEMU ${killed.join(', ')}`);
    stateDirs.delete(stateDir);
    tempRoots.delete(root);
    if (failedTests.has(t)) {
      await printSerialLogs(root);
      console.error(`# e2e: ${t.name} failed; kept ${root}`);
    } else {
      await rm(root, { recursive: true, force: true });
    }
  });
  return {
    dir,
    stateDir,
    env: { ...process.env, HOLOS_STATE_DIR: stateDir },
    async write(name, content) {
      const path = join(dir, name);
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, content);
      return path;
    },
  };
}

/**
 * An e2e test: gated (skips or, under CI, fails without QEMU or the image), with a TCG-sized
 * timeout, and failures recorded so that tempProject keeps the evidence.
 */
export function e2eTest(
  name: string,
  fn: (t: TestContext, env: E2eEnv) => Promise<void>,
  opts: { timeout?: number } = {},
): void {
  void test(name, { timeout: opts.timeout ?? E2E_TEST_TIMEOUT_MS }, async (t) => {
    try {
      const env = await e2eGate(t);
      if (env) await fn(t, env);
    } catch (error) {
      markFailed(t);
      throw error;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Guests

let guestsRunning = 0;
const guestWaiters: (() => void)[] = [];

/** Runs `fn` while holding one of MAX_GUESTS guest slots. */
export async function withGuestSlot<T>(fn: () => Promise<T>): Promise<T> {
  while (guestsRunning >= MAX_GUESTS) await new Promise<void>((resolve) => guestWaiters.push(resolve));
  guestsRunning++;
  try {
    return await fn();
  } finally {
    guestsRunning--;
    guestWaiters.shift()?.();
  }
}

export interface GuestOptions {
  /** Directory for the overlay, sockets, logs and pid file (short: unix socket paths ≤ 107 bytes). */
  dir: string;
  image: string;
  accel: Accel;
  qemu: QemuTools;
  /** The NoCloud seed ISO (attached read-only as a virtio CD). */
  seedIso: string;
  /** MAC of the user-mode NIC. */
  mac?: string;
  memoryMiB?: number;
  vcpus?: number;
  extraArgs?: string[];
}

export interface Guest {
  dir: string;
  pid: number;
  sshPort: number;
  qmpSocket: string;
  serialSocket: string;
  serialLog: string;
  /** True while the QEMU process lives. */
  alive(): boolean;
}

/**
 * Starts a guest from a fresh qcow2 overlay of the image: -daemonize with a pid file, serial
 * on a unix socket and a log file, QMP on a unix socket, a user-mode NIC forwarding
 * 127.0.0.1:<free port> to the guest's port 22. Registered for teardown.
 */
export async function startGuest(opts: GuestOptions): Promise<Guest> {
  await mkdir(opts.dir, { recursive: true, mode: 0o700 });
  const overlay = join(opts.dir, 'disk.qcow2');
  const qmpSocket = join(opts.dir, 'qmp.sock');
  const serialSocket = join(opts.dir, 'serial.sock');
  const serialLog = join(opts.dir, 'serial.log');
  const pidFile = join(opts.dir, 'qemu.pid');
  if (Buffer.byteLength(qmpSocket) > 107)
    throw new Error(`socket path too long for a unix socket: ${qmpSocket}`);
  await runOk(opts.qemu.img, ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', opts.image, overlay]);
  const sshPort = await freePort();
  const args = [
    ...opts.accel.args,
    '-machine', 'q35', '-m', String(opts.memoryMiB ?? 512), '-smp', String(opts.vcpus ?? 1),
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-drive', `file=${escapeOption(overlay)},format=qcow2,if=virtio`,
    '-drive', `file=${escapeOption(opts.seedIso)},format=raw,if=virtio,readonly=on`,
    '-netdev', `user,id=net0,hostfwd=tcp:127.0.0.1:${sshPort}-:22`,
    '-device', `virtio-net-pci,netdev=net0${opts.mac ? `,mac=${opts.mac}` : ''}`,
    '-device', 'virtio-rng-pci',
    '-chardev', `socket,id=serial0,path=${escapeOption(serialSocket)},server=on,wait=off,logfile=${escapeOption(serialLog)}`,
    '-serial', 'chardev:serial0',
    '-qmp', `unix:${escapeOption(qmpSocket)},server=on,wait=off`,
    '-pidfile', pidFile, '-daemonize',
    ...(opts.extraArgs ?? []),
  ]; // prettier-ignore
  await runOk(opts.qemu.system, args, { timeoutMs: 60_000 });
  const pid = await readPid(pidFile);
  if (pid === undefined || !(await isOurQemu(pid, qmpSocket))) {
    throw new Error(`QEMU daemonized but ${pidFile} does not name it`);
  }
  registerProcess(pid, qmpSocket);
  return {
    dir: opts.dir,
    pid,
    sshPort,
    qmpSocket,
    serialSocket,
    serialLog,
    alive: () => cmdlineSync(pid) !== undefined,
  };
}

/** Resolves once the file at `path` matches `pattern`; rejects after `timeoutMs`. */
export async function waitForLog(path: string, pattern: RegExp, timeoutMs = BOOT_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await readFile(path, 'latin1').catch(() => '');
    if (pattern.test(text)) return;
    if (Date.now() > deadline) throw new Error(`${path}: no ${String(pattern)} within ${timeoutMs / 1000}s`);
    await sleep(250);
  }
}

/** Reads what a TCP server says first (a banner), or '' if it says nothing in `timeoutMs`. */
function readBanner(port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let data = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(data);
    };
    const timer = setTimeout(done, timeoutMs);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      data += chunk;
      if (data.includes('\n')) done();
    });
    socket.on('error', done);
    socket.on('close', done);
  });
}

/**
 * Resolves with sshd's banner once one answers on 127.0.0.1:port. (QEMU's user-mode forward
 * accepts connections before the guest listens, and closes them: only a banner counts.)
 */
export async function waitForSshBanner(port: number, timeoutMs = BOOT_TIMEOUT_MS): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const banner = await readBanner(port, 5_000);
    if (banner.startsWith('SSH-')) return banner.trim();
    if (Date.now() > deadline)
      throw new Error(`no SSH banner on 127.0.0.1:${port} within ${timeoutMs / 1000}s`);
    await sleep(500);
  }
}

// ---------------------------------------------------------------------------------------------
// SSH

export interface SshOptions {
  port: number;
  /** An open stream to the guest's sshd instead of 127.0.0.1:port (see netnsConnect). */
  sock?: Duplex;
  username: string;
  privateKey: string;
  /** The host key the guest must present (an authorized_keys-style line); any key if omitted. */
  hostPublicKey?: string;
  timeoutMs?: number;
}

/** Connects once; rejects on any error, including a host key that is not the pinned one. */
export function sshConnect(opts: SshOptions): Promise<SshClient> {
  const pinned = opts.hostPublicKey === undefined ? undefined : publicKeyBlob(opts.hostPublicKey);
  // Read once: a getter may hand out a fresh stream per connection attempt.
  const sock = opts.sock;
  return new Promise((resolve, reject) => {
    const client = new Client();
    let hostKeyMismatch: Buffer | undefined;
    client.on('ready', () => resolve(client));
    client.on('error', (error) => {
      client.end();
      reject(
        hostKeyMismatch
          ? new Error(`host key mismatch: got ${hostKeyMismatch.toString('base64')}`, { cause: error })
          : error,
      );
    });
    client.connect({
      host: '127.0.0.1',
      port: opts.port,
      ...(sock && { sock }),
      username: opts.username,
      privateKey: opts.privateKey,
      readyTimeout: opts.timeoutMs ?? 30_000,
      hostVerifier: (key: Buffer) => {
        if (!pinned || key.equals(pinned)) return true;
        hostKeyMismatch = key;
        return false;
      },
    });
  });
}

/** Connects, retrying while the guest is still coming up (auth not ready, connection reset). */
export async function sshConnectRetry(opts: SshOptions, timeoutMs = BOOT_TIMEOUT_MS): Promise<SshClient> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await sshConnect(opts);
    } catch (error) {
      if (error instanceof Error && error.message.startsWith('host key mismatch')) throw error;
      if (Date.now() > deadline) throw error;
      await sleep(2_000);
    }
  }
}

/** Runs a command over an open connection (the product's execCollect, in RunResult's shape). */
export async function sshExec(
  client: SshClient,
  command: string,
  timeoutMs = BOOT_TIMEOUT_MS,
): Promise<RunResult> {
  const result = await execCollect(client, command, timeoutMs).catch((error: unknown) => {
    throw new Error(`ssh: ${command}: ${(error as Error).message}`, { cause: error });
  });
  return { ...result, signal: result.signal ? (`SIG${result.signal}` as NodeJS.Signals) : null };
}

// ---------------------------------------------------------------------------------------------
// Shutdown

/** QMP system_powerdown, then waits for QEMU to exit (ACPI shutdown of the guest). */
export async function powerDown(guest: Guest, timeoutMs = 3 * 60_000): Promise<string[]> {
  const qmp = await QmpClient.connect(guest.qmpSocket);
  const events: string[] = [];
  qmp.on('event', (event: { event: string }) => events.push(event.event));
  try {
    await qmp.execute('system_powerdown');
    const deadline = Date.now() + timeoutMs;
    while (guest.alive()) {
      if (Date.now() > deadline)
        throw new Error(`QEMU ${guest.pid} still running ${timeoutMs / 1000}s after system_powerdown`);
      await sleep(250);
    }
    unregisterProcess(guest.pid);
    return events;
  } finally {
    qmp.close();
  }
}

// ---------------------------------------------------------------------------------------------
// QEMU processes seen from outside

/** Whether `pid` is a QEMU whose command line names `marker` (a state dir, a socket path). */
export function isQemuOf(pid: number, marker: string): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv[0]!.includes('qemu') && argv.some((arg) => arg.includes(marker));
  } catch {
    return false;
  }
}

/** The events of `holos … --json`, one JSON object a line. */
export const parseEvents = (stdout: string): Stamped[] =>
  stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Stamped);

/** Skips (locally) or fails (CI) a test that needs a network namespace where none can be made. */
export function netnsGate(t: TestContext): boolean {
  if (canUseNetns()) return true;
  const reason = `${t.name}: needs root and iproute2 for a network namespace`;
  if (isCi()) throw new Error(`${reason} (CI=true: e2e tests must run)`);
  console.error(`# SKIP ${reason}`);
  t.skip(reason);
  return false;
}

// ---------------------------------------------------------------------------------------------
// Network namespaces (root only)

export interface Netns {
  name: string;
  /** Runs a command inside the namespace. */
  exec(command: string, args: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** argv that runs `argv` inside the namespace (for long-lived processes such as QEMU). */
  wrap(argv: readonly string[]): string[];
}

/** Whether this process may create network namespaces (root, `ip` on PATH). */
export function canUseNetns(): boolean {
  return process.getuid?.() === 0 && onPath('ip') !== undefined;
}

/**
 * Runs `fn` in a fresh network namespace `name` with lo up and a 224.0.0.0/4 route on lo
 * (so multicast socket backends work with no other interface); always deletes it after.
 */
export async function withNetns<T>(name: string, fn: (ns: Netns) => Promise<T>): Promise<T> {
  await runOk('ip', ['netns', 'add', name]);
  namespaces.add(name);
  installSignalHandlers();
  const ns: Netns = {
    name,
    exec: (command, args, opts) => run('ip', ['netns', 'exec', name, command, ...args], opts),
    wrap: (argv) => ['ip', 'netns', 'exec', name, ...argv],
  };
  try {
    await runOk('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up']);
    await runOk('ip', ['netns', 'exec', name, 'ip', 'route', 'add', '224.0.0.0/4', 'dev', 'lo']);
    return await fn(ns);
  } finally {
    await run('ip', ['netns', 'delete', name]);
    namespaces.delete(name);
  }
}

/** The built CLI run inside a network namespace (QEMU it starts lives there too). */
export function runHolosIn(
  ns: Netns,
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return ns.exec(process.execPath, [join(repoRoot, 'dist', 'cli.js'), ...args], opts);
}

/**
 * holos for one project inside the namespace: `holos` returns what it did, `holosOk` fails the
 * test unless it exited 0, and `ps` is `holos ps --format json` by instance name.
 */
export function holosRunners(ns: Netns, cwd: string, env: NodeJS.ProcessEnv) {
  const holos = (args: string[], timeoutMs = 10 * 60_000) => runHolosIn(ns, args, { cwd, env, timeoutMs });
  const holosOk = async (args: string[], timeoutMs?: number): Promise<RunResult> => {
    const result = await holos(args, timeoutMs);
    assert.equal(
      result.code,
      0,
      `holos ${args.join(' ')} exited ${result.code ?? result.signal}:\n${result.stderr}${result.stdout}`,
    );
    return result;
  };
  const ps = async () => {
    const out = JSON.parse((await holosOk(['ps', '--format', 'json'])).stdout) as {
      schema_version: number;
      instances: InstanceStatus[];
    };
    assert.equal(out.schema_version, 1);
    return new Map(out.instances.map((i) => [i.instance, i]));
  };
  return { holos, holosOk, ps };
}

const pipeToPort = `const s = require('net').connect(Number(process.argv[1]), '127.0.0.1');
process.stdin.pipe(s); s.pipe(process.stdout);
s.on('error', (e) => { console.error(e.message); process.exit(1); });
s.on('close', () => process.exit(0));`;

/**
 * A TCP connection to 127.0.0.1:`port` inside the namespace, as a stream: a small node
 * process inside the namespace pipes it. Give it to ssh2 as `sock`, or write HTTP to it.
 */
export function netnsConnect(ns: Netns, port: number): Duplex {
  const child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, '-e', pipeToPort, String(port)], {
    stdio: ['pipe', 'pipe', 'ignore'], // connection resets while sshd starts are expected
  });
  const stream = Duplex.from({ readable: child.stdout, writable: child.stdin });
  stream.on('close', () => child.kill());
  return stream;
}

/** An HTTP GET to 127.0.0.1:`port` inside the namespace; resolves with the whole response. */
export async function netnsHttpGet(ns: Netns, port: number, path = '/'): Promise<string> {
  const stream = netnsConnect(ns, port);
  stream.end(`GET ${path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n`);
  let response = '';
  for await (const chunk of stream) response += (chunk as Buffer).toString('utf8');
  return response;
}

// ---------------------------------------------------------------------------------------------
// A distribution mirror inside a namespace (test/support/mirror-main.ts)

export interface MirrorRequest {
  method: string;
  path: string;
  range?: string;
  ifRange?: string;
}

export interface NetnsMirror {
  /** The value of HOLOS_IMAGE_MIRROR (http://127.0.0.1:<port>/mirror, inside the namespace). */
  url: string;
  pid: number;
  /** Serves `file` as the catalog image `ref`, beside a checksum file that lists its digest. */
  serveAs(ref: string, file: string): Promise<{ url: string; digest: string }>;
  /** Every request the mirror has had, in order. */
  requests(): Promise<MirrorRequest[]>;
  /** The requests (any method) for the image `ref` and for its checksum file, so far. */
  requestsOf(ref: string): Promise<{ image: MirrorRequest[]; checksum: MirrorRequest[] }>;
  /** Ends it (stdin closed, then SIGKILL after 5s); also done when the test ends. */
  close(): Promise<void>;
}

const mirrorMain = join(repoRoot, 'test', 'support', 'mirror-main.ts');

/**
 * A long-lived helper (a DHCP server, say) inside the namespace: killed when the test ends or
 * the test process is interrupted. Its output is collected for a failure message.
 */
export function startHelperIn(t: TestContext, ns: Netns, argv: readonly string[]): { output: () => string } {
  const [command, ...args] = ns.wrap(argv);
  const child = spawn(command!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  helpers.add(child);
  installSignalHandlers();
  let output = '';
  for (const stream of [child.stdout, child.stderr])
    stream.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.on('close', () => helpers.delete(child));
  t.after(() => {
    child.kill('SIGKILL');
  });
  return { output: () => output };
}

/**
 * A mirror for HOLOS_IMAGE_MIRROR listening on 127.0.0.1 inside the namespace, where the holos
 * under test runs: a child process driven over its stdin and stdout. It is killed when the test
 * ends, when the test process is interrupted, and it exits by itself when its stdin closes.
 */
export async function startNetnsMirror(t: TestContext, ns: Netns): Promise<NetnsMirror> {
  const [command, ...args] = ns.wrap([process.execPath, '--import', 'tsx', mirrorMain]);
  const child = spawn(command!, args, { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'] });
  helpers.add(child);
  installSignalHandlers();
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<void>((resolve) =>
    child.on('close', () => {
      helpers.delete(child);
      resolve();
    }),
  );
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let gotUrl: ((url: string) => void) | undefined;
  createInterface({ input: child.stdout }).on('line', (line) => {
    const message = JSON.parse(line) as { url?: string; id?: number; result?: unknown; error?: string };
    if (message.url !== undefined) return gotUrl?.(message.url);
    const waiter = pending.get(message.id ?? -1);
    pending.delete(message.id ?? -1);
    if (message.error !== undefined) waiter?.reject(new Error(`mirror: ${message.error}`));
    else waiter?.resolve(message.result);
  });
  const gone = () => new Error(`the mirror in ${ns.name} exited; its stderr: ${stderr.slice(-2000)}`);
  void exited.then(() => {
    for (const waiter of pending.values()) waiter.reject(gone());
    pending.clear();
  });
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
  };
  t.after(close);
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no mirror URL within 30s: ${stderr}`)), 30_000);
    gotUrl = (found) => {
      clearTimeout(timer);
      resolve(found);
    };
    void exited.then(() => {
      clearTimeout(timer);
      reject(gone());
    });
  });
  let next = 1;
  const ask = <T>(op: string, fields: Record<string, string> = {}): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (child.exitCode !== null || child.signalCode !== null) return reject(gone());
      const id = next++;
      pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.stdin.write(`${JSON.stringify({ id, op, ...fields })}\n`);
    });
  return {
    url,
    pid: child.pid!,
    serveAs: (ref, file) => ask('serveAs', { ref, file }),
    requests: () => ask('requests'),
    async requestsOf(ref) {
      const paths = await ask<{ image: string; checksum: string }>('paths', { ref });
      const all = await ask<MirrorRequest[]>('requests');
      return {
        image: all.filter((r) => r.path === paths.image),
        checksum: all.filter((r) => r.path === paths.checksum),
      };
    },
    close,
  };
}

// ---------------------------------------------------------------------------------------------
// Guests that holos started inside a namespace

export type { SshClient };

/**
 * What a TCP server on 127.0.0.1:`port` inside the namespace says first (a line), or ''.
 * Bash's /dev/tcp, so a refused or reset connection (QEMU's user-mode forward before the guest
 * listens) costs no node process and prints nothing.
 */
export async function netnsReadBanner(ns: Netns, port: number, timeoutMs = 5_000): Promise<string> {
  const seconds = String(Math.max(1, Math.ceil(timeoutMs / 1000)));
  const script = 'exec 3<>"/dev/tcp/127.0.0.1/$0" && head -n 1 <&3';
  const result = await ns.exec('timeout', [seconds, 'bash', '-c', script, String(port)], {
    timeoutMs: timeoutMs + 5_000,
  });
  return result.stdout;
}

/**
 * Resolves with sshd's banner once one answers on 127.0.0.1:`port` inside the namespace;
 * rejects after `timeoutMs` or once `signal` aborts.
 */
export async function netnsWaitForSshBanner(
  ns: Netns,
  port: number,
  timeoutMs = BOOT_TIMEOUT_MS,
  signal?: AbortSignal,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    const banner = await netnsReadBanner(ns, port);
    if (banner.startsWith('SSH-')) return banner.trim();
    if (Date.now() > deadline)
      throw new Error(`no SSH banner on 127.0.0.1:${port} in ${ns.name} within ${timeoutMs / 1000}s`);
    await sleep(1_000);
  }
}

/**
 * sshConnect to 127.0.0.1:`opts.port` inside the namespace, with a fresh stream per attempt,
 * retrying while the guest is still coming up; a host key mismatch fails at once.
 */
export async function netnsSshConnectRetry(
  ns: Netns,
  opts: Omit<SshOptions, 'sock'>,
  timeoutMs = BOOT_TIMEOUT_MS,
): Promise<SshClient> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const sock = netnsConnect(ns, opts.port);
    try {
      return await sshConnect({ ...opts, sock });
    } catch (error) {
      sock.destroy();
      if (error instanceof Error && error.message.startsWith('host key mismatch')) throw error;
      if (Date.now() > deadline) throw error;
      await sleep(2_000);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// VMs held with -S: QEMU processes that never run a guest instruction, so no test image is
// needed and many of them cost this host's cores nothing (see bench/observe-plan.ts)

/**
 * An e2e test of holos itself on VMs held with `-S`: needs QEMU and a network namespace (root,
 * iproute2), not the test image. Skips with the reason locally; under CI=true a missing piece
 * fails it. Failures are recorded, so that tempProject keeps the evidence.
 */
export function heldVmTest(
  name: string,
  fn: (t: TestContext, qemu: QemuTools) => Promise<void>,
  opts: { timeout?: number } = {},
): void {
  void test(name, { timeout: opts.timeout ?? E2E_TEST_TIMEOUT_MS }, async (t) => {
    try {
      const qemu = qemuTools();
      const missing = [
        ...(qemu ? [] : ['no qemu-system-x86_64/qemu-img (apt install qemu-system-x86 qemu-utils)']),
        ...(canUseNetns() ? [] : ['needs root and iproute2 for a network namespace']),
      ];
      if (!qemu || missing.length > 0) {
        const reason = `e2e: ${missing.join('; ')}`;
        if (isCi()) throw new Error(`${reason} (CI=true: e2e tests must run)`);
        console.error(`# SKIP ${t.name}: ${reason}`);
        t.skip(reason);
        return;
      }
      await fn(t, qemu);
    } catch (error) {
      markFailed(t);
      throw error;
    }
  });
}

/**
 * Every live QEMU with an argument under `dir` (a state dir), found by scanning /proc: also one
 * that no pid file names, such as a QEMU started by a holos killed before it wrote one.
 */
export function qemusUnder(dir: string): { pid: number; argv: string[] }[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .flatMap((name) => {
      const argv = cmdlineSync(Number(name));
      return argv?.[0]?.includes('qemu') && argv.some((arg) => arg.includes(prefix))
        ? [{ pid: Number(name), argv }]
        : [];
    });
}

/** SIGKILLs every QEMU under `dir` (see qemusUnder) and waits until they are gone. */
export async function killQemusUnder(dir: string): Promise<number[]> {
  const pids = qemusUnder(dir).map((q) => q.pid);
  for (const pid of pids) signal(pid, 'SIGKILL');
  while (pids.some((pid) => cmdlineSync(pid))) await sleep(50);
  return pids;
}

/** The built CLI running inside a namespace, not waited for: to kill, stop or watch it. */
export interface HolosProcess {
  pid: number;
  /** What it wrote to stderr so far (holos prints its progress there). */
  stderr(): string;
  /** Resolves once its stderr matches; rejects if it exits first or after `timeoutMs`. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<void>;
  signal(sig: NodeJS.Signals): void;
  /** Its end, however it came (a signal: `code` null, `signal` set). */
  done: Promise<RunResult>;
}

/** Starts `holos <args>` inside the namespace; it is killed when the test ends, if still running. */
export function startHolosIn(
  t: TestContext,
  ns: Netns,
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): HolosProcess {
  const [command, ...argv] = ns.wrap([process.execPath, join(repoRoot, 'dist', 'cli.js'), ...args]);
  const child = spawn(command!, argv, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let closed = false;
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, sig) => {
      closed = true;
      resolve({ code, signal: sig, stdout, stderr });
    });
  });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await done.catch(() => undefined);
  });
  return {
    pid: child.pid!,
    stderr: () => stderr,
    signal: (sig) => child.kill(sig),
    done,
    waitForStderr: (pattern, timeoutMs = 60_000) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => finish(new Error(`no ${String(pattern)} within ${timeoutMs / 1000}s`)),
          timeoutMs,
        );
        const check = () => {
          if (pattern.test(stderr)) finish();
        };
        const exited = () =>
          finish(
            new Error(
              `holos ${args.join(' ')} exited without printing ${String(pattern)}: ${stderr.slice(-2000)}`,
            ),
          );
        const finish = (error?: Error) => {
          clearTimeout(timer);
          child.stderr.off('data', check);
          child.off('close', exited);
          if (error) reject(error);
          else resolve();
        };
        child.stderr.on('data', check);
        child.on('close', exited);
        if (pattern.test(stderr)) finish();
        else if (closed) exited();
      }),
  };
}
