// `holos watch` on one real VM inside a network namespace, under `restart: always`: a killed QEMU is restarted at once
// (the delay is measured and reported), a guest that powers itself off is restarted, an edit
// of `replicas` adds an instance without touching the other, an invalid edit changes nothing,
// a killed switch of the private segment is started again, `holos stop` from another terminal
// is respected, and Ctrl-C leaves the VMs running.

import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { isOurQemu } from '../../src/observe/process.js';
import type { Stamped } from '../../src/events.js';
import {
  BOOT_TIMEOUT_MS,
  canUseNetns,
  e2eTest,
  netnsConnect,
  repoRoot,
  runHolosIn,
  sshConnectRetry,
  sshExec,
  tempProject,
  withNetns,
  type Netns,
  type TempProject,
} from './harness.js';

const composeText = (image: string, replicas: number) => `name: watched
services:
  app:
    image: ${image}
    replicas: ${replicas}
    stop_grace_period: 5s
    # Started again after a kill and after a power-off alike (the default, "no", leaves it off:
    # test/e2e/compose.test.ts).
    restart: always
`;

/** `holos watch --json` running inside the namespace, with its events collected as they come. */
class Watcher {
  readonly events: Stamped[] = [];
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #waiters = new Set<() => void>();
  readonly exited: Promise<number | null>;
  stderr = '';

  constructor(ns: Netns, project: TempProject) {
    this.#child = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns.name,
        process.execPath,
        join(repoRoot, 'dist', 'cli.js'),
        'watch',
        '--json',
        '--resync',
        '5s',
      ],
      { cwd: project.dir, env: { ...project.env, HOLOS_ACCEL: 'tcg' } },
    );
    createInterface({ input: this.#child.stdout }).on('line', (line) => {
      this.events.push(JSON.parse(line) as Stamped);
      for (const wake of this.#waiters) wake();
    });
    this.#child.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) => this.#child.on('exit', (code) => resolve(code)));
  }

  /** The first event after index `from` that matches; rejects after `timeoutMs`. */
  async next(match: (e: Stamped) => boolean, from: number, timeoutMs = BOOT_TIMEOUT_MS): Promise<Stamped> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.slice(from).find(match);
      if (found) return found;
      if (Date.now() > deadline)
        throw new Error(
          `no matching watch event within ${timeoutMs / 1000}s; stderr: ${this.stderr.slice(-2000)}`,
        );
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          resolve();
        };
        this.#waiters.add(wake);
        setTimeout(wake, 1_000);
      });
    }
  }

  interrupt(): void {
    this.#child.kill('SIGINT');
  }

  kill(): void {
    this.#child.kill('SIGKILL');
  }
}

const instanceDone = (name: string, verbs: string[]) => (e: Stamped) =>
  e.type === 'action' &&
  e.phase === 'done' &&
  e.action.kind === 'instance' &&
  e.action.name === name &&
  verbs.includes(e.action.verb);

async function pidOf(project: TempProject, instance: string): Promise<number> {
  return Number(
    (await readFile(join(project.stateDir, 'instances', 'watched', instance, 'qemu.pid'), 'utf8')).trim(),
  );
}

/** Alive and still a QEMU of this test (a reaped-late zombie has an empty command line). */
const alive = (pid: number) => isOurQemu(pid, 'watched');

async function login(ns: Netns, project: TempProject, instance: string) {
  const dir = join(project.stateDir, 'instances', 'watched', instance);
  const applied = JSON.parse(await readFile(join(dir, 'applied.json'), 'utf8')) as {
    sshPort: number;
    hostPublicKey: string;
    spec: { user: string };
  };
  const privateKey = await readFile(join(project.stateDir, 'ssh', 'watched', 'id_ed25519'), 'utf8');
  return sshConnectRetry({
    port: applied.sshPort,
    username: applied.spec.user,
    privateKey,
    hostPublicKey: applied.hostPublicKey,
    get sock() {
      return netnsConnect(ns, applied.sshPort);
    },
  });
}

e2eTest(
  'watch: restarts killed and powered-off VMs, follows edits, respects stop, leaves VMs on Ctrl-C',
  async (t: TestContext, env) => {
    if (!canUseNetns()) {
      const reason = 'watch e2e: needs root and iproute2 for a network namespace';
      if (process.env.CI === 'true') throw new Error(`${reason} (CI=true)`);
      console.error(`# SKIP ${reason}`);
      t.skip(reason);
      return;
    }
    const project = await tempProject(t);
    await project.write('holos.yaml', composeText(env.image, 1));
    await withNetns(`holos-watch-${process.pid}`, async (ns) => {
      const holos = (...args: string[]) =>
        runHolosIn(ns, args, { cwd: project.dir, env: { ...project.env, HOLOS_ACCEL: 'tcg' } });
      const watcher = new Watcher(ns, project);
      t.after(() => watcher.kill());

      await watcher.next(instanceDone('app-0', ['create']), 0);
      await watcher.next((e) => e.type === 'watching' && e.instances.includes('app-0'), 0);
      const firstPid = await pidOf(project, 'app-0');

      // kill -9: noticed through the QMP event socket, restarted at once.
      let mark = watcher.events.length;
      const killedAt = Date.now();
      process.kill(firstPid, 'SIGKILL');
      const restart = await watcher.next(
        (e) =>
          e.type === 'action' &&
          e.phase === 'start' &&
          e.action.name === 'app-0' &&
          e.action.verb === 'start',
        mark,
        30_000,
      );
      const noticedMs = Date.parse(restart.time) - killedAt;
      t.diagnostic(`kill -9 → restart action started after ${noticedMs} ms`);
      await watcher.next(instanceDone('app-0', ['start']), mark, 30_000);
      const secondPid = await pidOf(project, 'app-0');
      assert.notEqual(secondPid, firstPid, 'a new QEMU runs app-0');
      assert.ok(await alive(secondPid));

      // poweroff inside the guest: QEMU exits, watch starts it again.
      const ssh = await login(ns, project, 'app-0');
      await sshExec(ssh, 'cloud-init status --wait >/dev/null; true');
      mark = watcher.events.length;
      await sshExec(ssh, 'sudo systemctl poweroff --no-block').catch(() => undefined);
      ssh.end();
      const exited = await watcher.next(
        (e) => e.type === 'trigger' && /app-0: (QEMU exited|SHUTDOWN)/.test(e.reason),
        mark,
        120_000,
      );
      await watcher.next(instanceDone('app-0', ['start', 'restart']), mark, 120_000);
      const thirdPid = await pidOf(project, 'app-0');
      assert.notEqual(thirdPid, secondPid, 'the powered-off guest was started again');
      t.diagnostic(`guest poweroff noticed: ${exited.type === 'trigger' ? exited.reason : ''}`);

      // replicas 1 → 2: app-1 is created; app-0 keeps running, and learns app-1's name over SSH
      // (issue #19: its hosts table is rewritten, no restart).
      mark = watcher.events.length;
      await project.write('holos.yaml', composeText(env.image, 2));
      await watcher.next(instanceDone('app-1', ['create']), mark, 60_000);
      await watcher.next(instanceDone('app-0', ['update']), mark, 240_000);
      assert.equal(await pidOf(project, 'app-0'), thirdPid, 'app-0 was not restarted by the edit');
      const touched = watcher.events
        .slice(mark)
        .filter(
          (e) =>
            e.type === 'action' &&
            e.action.kind === 'instance' &&
            e.action.name === 'app-0' &&
            e.action.verb !== 'update',
        );
      assert.deepEqual(touched, [], 'no other instance action on app-0');
      const app0 = await login(ns, project, 'app-0');
      assert.match((await sshExec(app0, 'getent hosts app-1')).stdout, /^10\.10\.0\.3\s+app-1\b/);
      app0.end();

      // An invalid edit is reported and changes nothing.
      mark = watcher.events.length;
      await project.write('holos.yaml', `${composeText(env.image, 2)}    vm: { memory_mb: lots }\n`);
      const invalid = await watcher.next((e) => e.type === 'invalid', mark, 60_000);
      assert.ok(
        invalid.type === 'invalid' && invalid.problems.some((p) => p.includes('memory_mb')),
        JSON.stringify(invalid),
      );
      await watcher.next((e) => e.type === 'plan', watcher.events.indexOf(invalid), 60_000);
      const acted = watcher.events.slice(mark).filter((e) => e.type === 'action');
      assert.deepEqual(acted, [], 'an invalid file changes nothing');
      await project.write('holos.yaml', composeText(env.image, 2));

      // The project's switch killed (issue #19): a pass of watch starts it again, no VM restarted.
      const switchPid = Number(
        (await readFile(join(project.stateDir, 'networks', 'watched', 'switch.pid'), 'utf8')).trim(),
      );
      mark = watcher.events.length;
      process.kill(switchPid, 'SIGKILL');
      await watcher.next(
        (e) =>
          e.type === 'action' &&
          e.phase === 'done' &&
          e.action.kind === 'segment' &&
          e.action.verb === 'start',
        mark,
        60_000,
      );
      assert.deepEqual(
        watcher.events.slice(mark).filter((e) => e.type === 'action' && e.action.kind === 'instance'),
        [],
        'no VM restarted for the switch',
      );

      // `holos stop app` from another terminal: watch does not start it again.
      const stopped = await holos('stop', 'app');
      assert.equal(stopped.code, 0, stopped.stderr);
      mark = watcher.events.length;
      await watcher.next((e) => e.type === 'trigger' && e.reason === 'periodic resync', mark, 30_000);
      await watcher.next((e) => e.type === 'plan', mark, 30_000);
      const restarted = watcher.events
        .slice(mark)
        .filter((e) => e.type === 'action' && e.action.kind === 'instance');
      assert.deepEqual(restarted, [], 'watch leaves a stopped service stopped');
      const started = await holos('start', 'app');
      assert.equal(started.code, 0, started.stderr);

      // Ctrl-C: watch exits 0 and the VMs keep running.
      const pids = [await pidOf(project, 'app-0'), await pidOf(project, 'app-1')];
      watcher.interrupt();
      assert.equal(await watcher.exited, 0, watcher.stderr);
      for (const pid of pids) assert.ok(await alive(pid), `QEMU ${pid} still runs after Ctrl-C`);

      const down = await holos('down');
      assert.equal(down.code, 0, down.stderr);
      for (const pid of pids) assert.ok(!(await alive(pid)), `QEMU ${pid} is gone after down`);
    });
  },
);
