// Crash safety and concurrency (issue #11), in the short form CI runs: holos killed with
// SIGKILL at a random moment of `up`, `down` and a project's first `up`, after which one `up`
// must converge, with exactly one QEMU per instance (no orphan, no duplicate) and the named
// volume untouched; and `up` and `down` started while the other runs, which must each succeed,
// wait or fail with a one-line message, never with an internal error.
//
// The VMs are real QEMU processes, started by the built CLI inside a private network namespace
// and held before their first instruction (`extra_args: [-S]`) on a blank 16 MiB disk: no test
// image, no guest boots, and next to nothing for this host's cores to do.
//
//   HOLOS_STORM_ROUNDS=<n>   rounds of the storm (default 18); the same file is the long soak.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { acquireLock } from '../../src/state/lock.js';
import { projectLayout } from '../../src/state/layout.js';
import {
  heldVmTest,
  killQemusUnder,
  qemusUnder,
  runHolosIn,
  runOk,
  startHolosIn,
  tempProject,
  withNetns,
  type Netns,
  type QemuTools,
  type RunResult,
  type TempProject,
} from './harness.js';

const stormRounds = Number(process.env.HOLOS_STORM_ROUNDS ?? 18);
const races = 10;
/** A holos is killed this long (at most) after it starts. */
const maxKillDelayMs = 1_500;
const instances = ['app-0', 'app-1', 'db-0'];

const composeText = (name: string, image: string) => `name: ${name}
services:
  app:
    image: ${image}
    replicas: 2
    stop_grace_period: 1s
    vm: { memory_mb: 128, extra_args: [-S] }
  db:
    image: ${image}
    volumes: [data:/var/lib/data]
    stop_grace_period: 1s
    vm: { memory_mb: 128, extra_args: [-S] }
volumes:
  data: { size: 64M }
`;

/** One project of the test, in its own directory, all in the test's state dir and namespace. */
class Stack {
  readonly name: string;
  readonly dir: string;
  readonly #t: TestContext;
  readonly #ns: Netns;
  readonly #env: NodeJS.ProcessEnv;
  readonly #stateDir: string;

  constructor(t: TestContext, ns: Netns, project: TempProject, name: string, dir: string) {
    this.#t = t;
    this.#ns = ns;
    this.#stateDir = project.stateDir;
    this.#env = { ...project.env, HOLOS_ACCEL: 'tcg', HOLOS_HEALTH_BYPASS: '1' };
    this.name = name;
    this.dir = dir;
  }

  run(...args: string[]): Promise<RunResult> {
    return runHolosIn(this.#ns, args, { cwd: this.dir, env: this.#env, timeoutMs: 3 * 60_000 });
  }

  /** Runs holos to its end and asserts that it succeeded. */
  async ok(...args: string[]): Promise<RunResult> {
    const result = await this.run(...args);
    assertOk(result, `holos ${args.join(' ')} (${this.name})`);
    return result;
  }

  start(...args: string[]) {
    return startHolosIn(this.#t, this.#ns, args, { cwd: this.dir, env: this.#env });
  }

  qmpSockets(): string[] {
    return instances.map((i) => join(this.#stateDir, 'instances', this.name, i, 'qmp.sock'));
  }

  volume(): string {
    return join(this.#stateDir, 'volumes', this.name, 'data.qcow2');
  }

  /** `holos plan --detailed-exitcode` says there is nothing to do. */
  async assertConverged(what: string): Promise<void> {
    const plan = await this.run('plan', '--detailed-exitcode');
    assert.equal(plan.code, 0, `${what}: not converged:\n${plan.stdout}${plan.stderr}`);
  }
}

function assertOk(result: RunResult, what: string): void {
  assert.doesNotMatch(result.stderr, /internal error/, what);
  assert.equal(
    result.code,
    0,
    `${what} exited ${result.code ?? result.signal}:\n${result.stderr.slice(-3000)}`,
  );
}

/**
 * Exactly one QEMU for each of these QMP sockets and none other under the state dir: a QEMU
 * that holos lost track of (an orphan) or started twice (a duplicate) shows here.
 */
function assertQemus(stateDir: string, sockets: string[], what: string): void {
  const found = qemusUnder(stateDir).map(({ pid, argv }) => {
    const qmp = argv.map((arg) => /(?:^|,)id=qmp,path=([^,]+)/.exec(arg)?.[1]).find(Boolean);
    return qmp ?? `pid ${pid} without a QMP socket: ${argv.join(' ')}`;
  });
  assert.deepEqual(found.sort(), [...sockets].sort(), `${what}: QEMU processes`);
}

const sha256 = async (path: string) =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

/** Where the volume file is: it must be the same file (inode) of the same size all along. */
const fileId = (path: string) => {
  const { ino, size } = statSync(path);
  return { ino, size };
};

/** Every path under `dir` named after the project (its directories, record, lock). */
async function pathsNaming(dir: string, project: string): Promise<string[]> {
  const named = new RegExp(`^${project}(\\.|$)`);
  const entries = await readdir(dir, { recursive: true });
  return entries.filter((entry) => entry.split('/').some((name) => named.test(name)));
}

async function withStacks(
  t: TestContext,
  qemu: QemuTools,
  label: string,
  fn: (main: Stack, fresh: (name: string) => Promise<Stack>, project: TempProject) => Promise<void>,
): Promise<void> {
  const project = await tempProject(t);
  const base = join(project.dir, 'base.qcow2');
  await runOk(qemu.img, ['create', '-q', '-f', 'qcow2', base, '16M']);
  await withNetns(`holos-${label}-${process.pid}`, async (ns) => {
    const stack = async (name: string, dir: string) => {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'holos.yaml'), composeText(name, base));
      return new Stack(t, ns, project, name, dir);
    };
    try {
      await fn(await stack('storm', project.dir), (name) => stack(name, join(project.dir, name)), project);
    } finally {
      // Before the namespace goes: QEMU that no pid file names is not found by tempProject.
      const left = await killQemusUnder(project.stateDir);
      if (left.length > 0) t.diagnostic(`killed QEMU ${left.join(', ')} left by a failure`);
    }
  });
}

heldVmTest(
  'storm: holos killed -9 during up, down and a first up; the next up converges, one QEMU per instance, the volume untouched',
  async (t, qemu) => {
    const qemuIo = join(dirname(qemu.img), 'qemu-io');
    assert.ok(existsSync(qemuIo), `${qemuIo}: qemu-io comes with qemu-img (qemu-utils)`);
    await withStacks(t, qemu, 'storm', async (main, fresh, project) => {
      const started = Date.now();
      await main.ok('up');
      // A marker in the named volume, written while no QEMU holds it: after the storm, the file
      // must be the same, byte for byte.
      await main.ok('down');
      await runOk(qemuIo, ['-f', 'qcow2', '-c', 'write -P 0x5a 0 4k', main.volume()]);
      const volume = { id: fileId(main.volume()), sha256: await sha256(main.volume()) };
      await main.ok('up');

      const kinds = ['down', 'up', 'first up'] as const;
      let landed = 0;
      for (let round = 0; round < stormRounds; round++) {
        const kind = kinds[round % kinds.length]!;
        const what = `round ${round + 1} (${kind})`;
        // `up` has work to do only on a project that is down; a first up needs a new project.
        if (kind === 'up') await main.ok('down');
        const target = kind === 'first up' ? await fresh(`fresh${round + 1}`) : main;
        const delay = Math.floor(Math.random() * maxKillDelayMs);
        const victim = target.start(kind === 'down' ? 'down' : 'up');
        await sleep(delay);
        victim.signal('SIGKILL');
        const killed = await victim.done;
        if (killed.signal === 'SIGKILL') landed++;
        else assertOk(killed, `${what}: holos ${kind}, done before the kill`);
        t.diagnostic(`${what}: killed after ${delay} ms${killed.signal ? '' : ' (it had finished)'}`);

        await target.ok('up');
        await target.assertConverged(what);
        const sockets = [...main.qmpSockets(), ...(target === main ? [] : target.qmpSockets())];
        assertQemus(project.stateDir, sockets, what);
        assert.deepEqual(fileId(main.volume()), volume.id, `${what}: the volume file was replaced`);
        if (target !== main) {
          // A project cut short in its first up still goes entirely with `down --volumes`.
          await target.ok('down', '--volumes');
          assertQemus(project.stateDir, main.qmpSockets(), `${what}, after down --volumes`);
          assert.deepEqual(await pathsNaming(project.stateDir, target.name), [], `${what}: left behind`);
        }
      }

      await main.ok('down');
      assertQemus(project.stateDir, [], 'after the last down');
      assert.equal(await sha256(main.volume()), volume.sha256, 'the volume changed');
      await runOk(qemuIo, ['-f', 'qcow2', '-c', 'read -P 0x5a 0 4k', main.volume()]);
      t.diagnostic(
        `${stormRounds} rounds, ${landed} kills while holos ran, in ${((Date.now() - started) / 1000).toFixed(0)} s`,
      );
    });
  },
);

/** A holos that lost a race: it exited 0, or with a one-line message of its own, never a crash. */
function assertClearEnd(result: RunResult, what: string): 'ok' | 'waited' | 'refused' {
  assert.doesNotMatch(result.stderr, /internal error|^\s+at /m, `${what}:\n${result.stderr}`);
  if (result.code !== 0) {
    const last = result.stderr.trim().split('\n').pop() ?? '';
    assert.match(
      last,
      /^holos: (?!warning)/,
      `${what} exited ${result.code ?? result.signal}:\n${result.stderr}`,
    );
    return 'refused';
  }
  return /waiting for holos \(pid \d+\)/.test(result.stderr) ? 'waited' : 'ok';
}

heldVmTest(
  'concurrency: up and down started while the other runs end clearly, then up converges; two ups at once both succeed, one after the other',
  async (t, qemu) => {
    await withStacks(t, qemu, 'race', async (main, _fresh, project) => {
      await main.ok('up');
      const outcomes = new Map<string, number>();
      for (let race = 0; race < races; race++) {
        const order = race % 2 === 0 ? (['down', 'up'] as const) : (['up', 'down'] as const);
        const [first, second] = order;
        const what = `race ${race + 1} (${second} while ${first} runs)`;
        if (first === 'up') await main.ok('down');
        const a = main.start(first);
        await sleep(Math.floor(Math.random() * 1_000));
        const b = main.start(second);
        const ends = await Promise.all([a.done, b.done]);
        for (const [i, end] of ends.entries()) {
          const outcome = `${order[i]} ${assertClearEnd(end, `${what}: ${order[i]}`)}`;
          outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        }
        await main.ok('up');
        await main.assertConverged(what);
        assertQemus(project.stateDir, main.qmpSockets(), what);
      }
      t.diagnostic(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`);

      // Two ups at once. The test holds the project's lock until both say they wait, so that
      // they surely meet, with no guess at how long anything takes; then one applies the plan
      // and the other, after it, finds nothing to do.
      await main.ok('down');
      const held = await acquireLock(projectLayout(project.stateDir, main.name).lock, main.name);
      const ups = [main.start('up'), main.start('up')];
      for (const up of ups) await up.waitForStderr(new RegExp(`waiting for holos \\(pid ${process.pid}\\)`));
      await held.release();
      const ends = await Promise.all(ups.map((up) => up.done));
      for (const end of ends) assertOk(end, 'two ups at once');
      const applied = ends.filter((end) => /: applying \d+ action/.test(end.stderr));
      assert.equal(
        applied.length,
        1,
        `one up applies, the other then has nothing to do:\n${ends.map((e) => e.stderr).join('\n')}`,
      );
      await main.assertConverged('two ups at once');
      assertQemus(project.stateDir, main.qmpSockets(), 'two ups at once');
      await main.ok('down');
      assertQemus(project.stateDir, [], 'after the last down');
    });
  },
);
