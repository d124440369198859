// End to end on the real holos binary and real QEMU processes held before their first
// instruction (`-S`: no guest boots, so this is quick), in a network namespace of the test's own.
// Issue #11 (items 1, 2, 7): two checkouts with the same directory name are two compose files
// for one project name, and the second is refused; `down -v` removes the volumes;
// `down <name> --volumes` works after a plain `down`. Issue #12: what `plan --json` prints on a
// fresh project is what the `up` that follows does, action for action, id for id.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Plan } from '../../src/reconcile/plan.js';
import {
  heldVmTest,
  isQemuOf,
  parseEvents,
  qemusUnder,
  runHolosIn,
  runOk,
  tempProject,
  withNetns,
} from './harness.js';

const compose = `services:
  db:
    image: ./base.qcow2
    volumes: [data:/data]
    stop_grace_period: 1s
    vm: { memory_mb: 128, extra_args: [-S] }
volumes:
  data: { size: 16M }
`;

heldVmTest(
  'identity: two checkouts named app side by side; down -v; down <name> --volumes',
  async (t, qemu) => {
    const proj = await tempProject(t);
    const checkout = async (side: string) => {
      const dir = join(proj.dir, side, 'app');
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'holos.yaml'), compose);
      await runOk(qemu.img, ['create', '-q', '-f', 'qcow2', join(dir, 'base.qcow2'), '16M']);
      return dir;
    };
    const [x, y] = [await checkout('x'), await checkout('y')];
    const holosEnv = { ...proj.env, HOLOS_ACCEL: 'tcg', HOLOS_HEALTH_BYPASS: '1' };
    const state = (...parts: string[]) => join(proj.stateDir, ...parts);
    const volume = state('volumes', 'app', 'data.qcow2');

    await withNetns(`holos-id-${process.pid}`, async (ns) => {
      const holos = (cwd: string, ...args: string[]) => runHolosIn(ns, args, { cwd, env: holosEnv });
      const up = await holos(x, 'up');
      assert.equal(up.code, 0, up.stderr);
      const pid = Number((await readFile(state('instances', 'app', 'db-0', 'qemu.pid'), 'utf8')).trim());
      const disk = statSync(state('instances', 'app', 'db-0', 'disk.qcow2')).ino;
      const volumeInode = statSync(volume).ino;

      // The second checkout: every verb that would act is refused with one line, naming both files.
      const refusal = new RegExp(
        `^holos: project app is managed from ${x}/holos\\.yaml, not from ${y}/holos\\.yaml: ` +
          'name this one with -p <name>, free the name with holos down -v in .*, or manage it from here with holos up --take-over\\n$',
      );
      for (const verb of [
        ['up'],
        ['plan'],
        ['stop'],
        ['start'],
        ['down'],
        ['down', '-v'],
        ['up', '--dry-run'],
      ]) {
        const r = await holos(y, ...verb);
        assert.equal(r.code, 1, `${verb.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, refusal, verb.join(' '));
      }
      assert.equal(isQemuOf(pid, proj.stateDir), true, "x's VM still runs");
      assert.equal(
        statSync(state('instances', 'app', 'db-0', 'disk.qcow2')).ino,
        disk,
        "x's root disk is the same",
      );
      assert.equal(statSync(volume).ino, volumeInode, "x's volume is the same file");
      assert.deepEqual(qemusUnder(proj.stateDir).length, 1, 'no QEMU of y was started');

      // Under another name, the second checkout is a project of its own.
      const other = await holos(y, '-p', 'app2', 'up');
      assert.equal(other.code, 0, other.stderr);
      assert.equal(qemusUnder(proj.stateDir).length, 2);
      assert.equal((await holos(y, '-p', 'app2', 'down', '-v')).code, 0);
      assert.equal(existsSync(state('volumes', 'app2')), false, 'down -v removed app2 entirely');

      // A plain down in x: the VM goes, the volume and the name stay.
      assert.equal((await holos(x, 'down')).code, 0);
      assert.equal(isQemuOf(pid, proj.stateDir), false);
      assert.equal(statSync(volume).ino, volumeInode, 'a plain down keeps the volume');
      assert.match((await holos(y, 'up')).stderr, refusal, "x's volume still holds the name");

      // down <name> --volumes, without the compose file, after the plain down.
      const ps = await holos(proj.dir, 'ps', '-a');
      assert.match(ps.stdout, /no instances/);
      const gone = await holos(proj.dir, 'down', 'app', '--volumes');
      assert.equal(gone.code, 0, gone.stderr);
      assert.match(gone.stderr, /volume data: removed/);
      assert.equal(existsSync(volume), false, 'down app --volumes removed the volume');
      for (const dir of ['instances', 'volumes', 'ssh'])
        assert.equal(existsSync(state(dir, 'app')), false, `${dir}/app is gone`);
      assert.deepEqual(readdirSync(state('projects')), [], 'no project record is left');

      // The name is free: y takes it.
      const yUp = await holos(y, 'up');
      assert.equal(yUp.code, 0, yUp.stderr);
      assert.equal((await holos(y, 'down', '-v')).code, 0);
      assert.deepEqual(qemusUnder(proj.stateDir), []);
      assert.equal(existsSync(volume), false);
    });
  },
);

heldVmTest(
  'plan --json on a fresh project and the events of the up that follows name the same actions',
  async (t, qemu) => {
    const proj = await tempProject(t);
    await runOk(qemu.img, ['create', '-q', '-f', 'qcow2', join(proj.dir, 'base.qcow2'), '16M']);
    await proj.write(
      'holos.yaml',
      `name: same
services:
  db:
    image: ./base.qcow2
    volumes: [data:/data]
    healthcheck: { test: "true" }
    stop_grace_period: 1s
    vm: { memory_mb: 128, extra_args: [-S] }
  web:
    image: ./base.qcow2
    replicas: 2
    depends_on: [db]
    stop_grace_period: 1s
    vm: { memory_mb: 128, uefi: true, extra_args: [-S] }
volumes:
  data: { size: 16M }
`,
    );
    const holosEnv = { ...proj.env, HOLOS_ACCEL: 'tcg', HOLOS_HEALTH_BYPASS: '1' };
    await withNetns(`holos-same-${process.pid}`, async (ns) => {
      const holos = (...args: string[]) => runHolosIn(ns, args, { cwd: proj.dir, env: holosEnv });
      const planned = JSON.parse((await holos('plan', '--json')).stdout) as Plan;
      const up = await holos('up', '--json');
      assert.equal(up.code, 0, up.stderr);
      const started = parseEvents(up.stdout).flatMap((e) =>
        e.type === 'action' && e.phase === 'start' ? [e.action] : [],
      );
      assert.deepEqual(
        started.map((a) => a.id).sort(),
        planned.actions.map((a) => a.id).sort(),
        'the same actions, by id',
      );
      for (const action of started) {
        const printed = planned.actions.find((a) => a.id === action.id)!;
        assert.deepEqual(
          action,
          printed,
          `${action.id} is the action plan printed, reason and edges included`,
        );
      }
      assert.deepEqual(
        planned.gates.map((g) => g.id),
        ['health:db'],
      );
      // web boots UEFI: each replica got its own variable store, a part made during its create.
      for (const name of ['web-0', 'web-1']) {
        assert.equal(planned.actions.find((a) => a.id === `nvram:${name}`)?.during, `instance:${name}`);
        assert.ok(existsSync(join(proj.stateDir, 'instances', 'same', name, 'uefi-vars.fd')), name);
      }
      assert.equal((await holos('down', '-v')).code, 0);
      assert.deepEqual(qemusUnder(proj.stateDir), []);
    });
  },
);
