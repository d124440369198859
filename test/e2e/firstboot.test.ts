// Issue #17 end to end, on real guests in a network namespace of the test's own: a VM killed
// with SIGKILL while cloud-init sets it up is recreated by the next `up` (its first boot never
// finished) and then answers `holos exec`; a service whose runcmd fails is `degraded` in `ps`
// and fails `up --wait` with cloud-init's own message; `up --wait` returns only once every VM
// is ready, saying each phase with the time since its QEMU started.

import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Plan } from '../../src/reconcile/plan.js';
import type { InstanceStatus } from '../../src/access/status.js';
import type { InstanceDetails } from '../../src/access/inspect.js';
import {
  BOOT_TIMEOUT_MS,
  e2eTest,
  heldVmTest,
  isQemuOf,
  netnsGate,
  parseEvents,
  runHolosIn,
  runOk,
  tempProject,
  waitForLog,
  withNetns,
} from './harness.js';

const compose = (image: string, badRuncmd: string[]) => `name: firstboot
services:
  app:
    image: ${image}
    stop_grace_period: 5s
    cloud_init:
      write_files:
        - path: /etc/holos-firstboot
          content: "made on the first boot\\n"
  bad:
    image: ${image}
    stop_grace_period: 5s
    cloud_init:
      runcmd: ${JSON.stringify(badRuncmd)}
`;

const failing = ['echo holos-e2e-about-to-fail', 'false'];
const degradedBecause =
  /modules-final: scripts-user failed: Runparts: 1 failures \(runcmd\) in 1 attempted commands/;

e2eTest(
  'first boot: killed mid-provisioning is recreated; a failing runcmd is degraded; up --wait waits for ready',
  async (t, env) => {
    if (!netnsGate(t)) return;
    const project = await tempProject(t);
    await project.write('holos.yaml', compose(env.image, failing));
    const dir = (instance: string) => join(project.stateDir, 'instances', 'firstboot', instance);
    const pidOf = (instance: string) => Number(readFileSync(join(dir(instance), 'qemu.pid'), 'utf8').trim());
    /** When the root disk file was made (an inode number is reused at once, so it cannot tell). */
    const diskBorn = (instance: string) => {
      const stats = statSync(join(dir(instance), 'disk.qcow2'));
      return stats.birthtimeMs > 0 ? stats.birthtimeMs : stats.ctimeMs;
    };
    let killedAt = 0;

    await withNetns(`holos-fb-${process.pid}`, async (ns) => {
      const holos = (args: string[], timeoutMs = 5 * 60_000) =>
        runHolosIn(ns, args, {
          cwd: project.dir,
          env: { ...project.env, HOLOS_ACCEL: env.accel.kind },
          timeoutMs,
        });
      const ps = async () => {
        const r = await holos(['ps', '--format', 'json']);
        assert.equal(r.code, 0, r.stderr);
        const rows = (JSON.parse(r.stdout) as { instances: InstanceStatus[] }).instances;
        return new Map(rows.map((row) => [row.instance, row]));
      };
      try {
        const up = await holos(['up']);
        assert.equal(up.code, 0, up.stderr);

        await t.test('killed while cloud-init sets it up: the plan recreates it', async () => {
          // cloud-init's network stage is at work: the disk holds part of its state.
          await waitForLog(
            join(dir('app-0'), 'serial.log'),
            /Cloud-init v\. \S+ running 'init'/,
            BOOT_TIMEOUT_MS,
          );
          const pid = pidOf('app-0');
          process.kill(pid, 'SIGKILL');
          while (isQemuOf(pid, project.stateDir)) await sleep(100);
          killedAt = Date.now();
          const rows = await ps();
          assert.equal(rows.get('app-0')!.state, 'exited');
          const plan = await holos(['plan', '--json']);
          assert.equal(plan.code, 0, plan.stderr);
          const actions = (JSON.parse(plan.stdout) as Plan).actions.map(
            (a) => `${a.id} ${a.verb} ${a.cause}: ${a.reason}`,
          );
          assert.deepEqual(actions, [
            'overlay:app-0 recreate replaced: a new root disk, so cloud-init runs again',
            'instance:app-0 recreate interrupted: its first boot never finished',
          ]);
        });

        await t.test(
          'up --wait: recreates it, waits for ready, and fails on the degraded one',
          async (st) => {
            const started = Date.now();
            const wait = await holos(['up', '--wait', '--wait-timeout', '8m'], 10 * 60_000);
            st.diagnostic(
              `up --wait returned after ${Math.round((Date.now() - started) / 1000)}s:\n${wait.stderr}`,
            );
            assert.equal(wait.code, 1, `bad-0 is degraded, so the wait fails:\n${wait.stderr}`);
            assert.match(wait.stderr, /^app-0: recreate \(its first boot never finished\)$/m);
            assert.match(
              wait.stderr,
              /^app-0: (booting|provisioning), \d+s$/m,
              'a line per phase, with its time',
            );
            assert.match(wait.stderr, /^app-0: ready after (\d+m)?\d+s$/m);
            assert.match(
              wait.stderr,
              new RegExp(`^bad-0: degraded after (\\d+m)?\\d+s: ${degradedBecause.source}$`, 'm'),
            );
            assert.match(
              wait.stderr,
              new RegExp(
                `^holos: bad-0 is degraded: cloud-init: ${degradedBecause.source}; see holos logs bad-0$`,
                'm',
              ),
            );
            assert.doesNotMatch(wait.stderr, /^holos: app-0/m, 'app-0 is not a problem');
            assert.match(wait.stdout, /app-0 +running +ready/);
            assert.match(wait.stdout, /bad-0 +running +degraded/);
            assert.match(wait.stderr, /^overlay app-0: recreated in /m);
            assert.ok(diskBorn('app-0') >= killedAt, 'app-0 has a root disk made after the kill');
          },
        );

        await t.test(
          'ps says ready and degraded, with the verdict; exec answers on the new disk',
          async () => {
            const rows = await ps();
            assert.equal(rows.get('app-0')!.phase, 'ready');
            assert.deepEqual(rows.get('app-0')!.cloud_init, { status: 'ready', errors: [] });
            assert.equal(rows.get('bad-0')!.phase, 'degraded');
            assert.equal(rows.get('bad-0')!.cloud_init!.status, 'degraded');
            assert.match(rows.get('bad-0')!.cloud_init!.errors.join('\n'), degradedBecause);
            const table = await holos(['ps']);
            assert.match(table.stdout, /^SERVICE +INSTANCE +STATE +PHASE +HEALTH/m);
            const exec = await holos(['exec', 'app-0', '--', 'cat', '/etc/holos-firstboot']);
            assert.deepEqual([exec.code, exec.stdout], [0, 'made on the first boot\n'], exec.stderr);
            const logs = await holos(['logs', 'bad']);
            assert.match(logs.stdout, /holos-e2e-about-to-fail/);
          },
        );

        await t.test(
          'runcmd fixed: up --wait --json recreates bad-0 and returns once all are ready',
          async () => {
            await project.write('holos.yaml', compose(env.image, ['echo holos-e2e-fixed']));
            const wait = await holos(['up', '--wait', '--json', '--wait-timeout', '8m'], 10 * 60_000);
            assert.equal(wait.code, 0, wait.stderr);
            const events = parseEvents(wait.stdout);
            const phases = events.flatMap((e) => (e.type === 'phase' ? [e] : []));
            const of = (name: string) => phases.filter((e) => e.instance === name).map((e) => e.phase);
            assert.deepEqual(of('app-0'), ['ready'], 'app-0 was ready already');
            const bad = of('bad-0');
            assert.equal(bad.at(-1), 'ready', bad.join(' → '));
            assert.ok(bad.includes('provisioning'), `bad-0 was seen provisioning: ${bad.join(' → ')}`);
            const elapsed = phases.filter((e) => e.instance === 'bad-0').map((e) => e.elapsed_ms);
            assert.deepEqual(
              elapsed,
              [...elapsed].sort((a, b) => a - b),
              'elapsed times grow',
            );
            const rows = await ps();
            for (const name of ['app-0', 'bad-0']) assert.equal(rows.get(name)!.phase, 'ready', name);
          },
        );
      } finally {
        const down = await holos(['down']);
        assert.equal(down.code, 0, down.stderr);
      }
    });
  },
);

// A VM on an empty disk never boots (its firmware finds nothing to boot): its phase stays
// `booting`, which `up --wait` reports at its timeout and `inspect` shows with the rest.
heldVmTest(
  'first boot: inspect a held VM; up --wait gives up at --wait-timeout, naming the phase',
  async (t, qemu) => {
    const project = await tempProject(t);
    await runOk(qemu.img, ['create', '-q', '-f', 'qcow2', join(project.dir, 'base.qcow2'), '16M']);
    await project.write(
      'holos.yaml',
      'name: held\nservices:\n  db:\n    image: ./base.qcow2\n    stop_grace_period: 1s\n    vm: { memory_mb: 128 }\n',
    );
    await withNetns(`holos-held-${process.pid}`, async (ns) => {
      const holos = (...args: string[]) =>
        runHolosIn(ns, args, { cwd: project.dir, env: { ...project.env, HOLOS_ACCEL: 'tcg' } });
      try {
        const wait = await holos('up', '--wait', '--wait-timeout', '2s');
        assert.equal(wait.code, 1, wait.stderr);
        assert.match(wait.stderr, /^db-0: booting, 0s$/m);
        assert.match(
          wait.stderr,
          /^holos: db-0 is still booting after 2s; a longer --wait-timeout waits longer$/m,
        );
        assert.match(wait.stdout, /db-0 +running +booting/);

        const text = await holos('inspect', 'db');
        assert.equal(text.code, 0, text.stderr);
        const base = join(project.dir, 'base.qcow2');
        const dir = join(project.stateDir, 'instances', 'held', 'db-0');
        for (const line of [
          /^instance +db-0 \(service db, project held\)$/m,
          /^state +running$/m,
          /^phase +booting$/m,
          /^cloud-init +its first boot has not finished$/m,
          /^networks +default 10\.10\.0\.2$/m,
          new RegExp(`^disk +${dir}/disk\\.qcow2\\n +on ${base}$`, 'm'),
          /^qemu +\S*qemu-system-x86_64 .*-name db-0/m,
          /^against the file +as the file says$/m,
        ])
          assert.match(text.stdout, line);
        const json = await holos('inspect', 'db-0', '--format', 'json');
        const details = JSON.parse(json.stdout) as InstanceDetails & { schema_version: number };
        assert.equal(details.schema_version, 1);
        assert.deepEqual(
          [details.phase, details.qmp_status, details.cloud_init, details.first_boot?.state],
          ['booting', 'running', null, 'pending'],
        );
        assert.deepEqual(details.disk.backing_chain, [base]);
        assert.equal(details.spec?.name, 'db-0');
        assert.deepEqual((details as { pending?: unknown }).pending, []);
        // Edited, not applied: inspect says what the next up would do to it.
        await project.write(
          'holos.yaml',
          'name: held\nservices:\n  db:\n    image: ./base.qcow2\n    stop_grace_period: 1s\n    vm: { memory_mb: 160 }\n',
        );
        const edited = await holos('inspect', 'db-0', '--format', 'json');
        const pending = (JSON.parse(edited.stdout) as { pending: { verb: string; reason: string }[] })
          .pending;
        assert.deepEqual(
          pending.map((a) => a.verb),
          ['restart'],
        );
        assert.match(pending[0]!.reason, /memory/);
        assert.match((await holos('inspect', 'db')).stdout, /^against the file +restart: .*memory/m);
        const bad = await holos('inspect', 'db', '--format', 'yaml');
        assert.deepEqual([bad.code, bad.stderr], [1, 'holos: --format yaml: use text or json\n']);
        const lone = await holos('up', '--wait-timeout', '1s');
        assert.deepEqual(
          [lone.code, lone.stderr],
          [1, 'holos: --wait-timeout 1s needs --wait: add it, or drop --wait-timeout\n'],
        );
      } finally {
        assert.equal((await holos('down')).code, 0);
      }
    });
  },
);
