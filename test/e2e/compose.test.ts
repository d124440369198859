// End to end, issue #15: a compose file written the way compose users write one, on real
// guests. db has a healthcheck; job's command runs once; app depends on db with `condition:
// service_healthy` and on job with `service_completed_successfully`, takes its port from `.env`
// through an override file, and runs its `command` as the VM's main service with an
// `environment` variable, under `restart: "no"`. One `up` boots all three; then:
// - app starts only once db is healthy and job's command has exited 0 (the order of the events);
// - what systemd says of a failing unit reads as a failure (the gate's parser, on real systemd);
// - the main process serves the variable on the interpolated port, from the host;
// - it comes back by itself after the VM restarts (the unit is enabled, not run once);
// - `holos watch` leaves app powered off when its guest powers itself off (restart: "no").
// Everything runs in a network namespace made for the test (its 127.0.0.1 has the ports).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { mainUnitName } from '../../src/cloudinit/main-service.js';
import { mainServiceState, showCommand } from '../../src/ssh/completion.js';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BOOT_TIMEOUT_MS,
  canUseNetns,
  e2eTest,
  netnsHttpGet,
  parseEvents,
  holosRunners,
  startHolosIn,
  tempProject,
  withNetns,
  type Netns,
} from './harness.js';

process.env.HOLOS_ACCEL ??= 'tcg';

const project = 'speaks';

function baseYaml(image: string, greeting: string): string {
  const q = (text: string) => JSON.stringify(text);
  return [
    `name: ${project}`,
    'services:',
    '  db:',
    `    image: ${q(image)}`,
    '    healthcheck:',
    // Healthy only a while after boot, so that an app started too early would be seen.
    '      test: ["CMD-SHELL", "test -f /var/lib/cloud/instance/boot-finished"]',
    '      interval: 5s',
    '      start_period: 5m',
    '  job:',
    `    image: ${q(image)}`,
    '    command: ["/bin/sh", "-c", "sleep 3; echo migrated > /var/tmp/holos-job"]',
    '    stop_grace_period: 5s',
    '  app:',
    `    image: ${q(image)}`,
    '    depends_on:',
    '      db:',
    '        condition: service_healthy',
    '      job:',
    '        condition: service_completed_successfully',
    '    restart: "no"',
    '    environment:',
    `      GREETING: ${q(greeting)}`,
    '    working_dir: /srv',
    // $$: a literal $ for compose; the guest's shell reads $GREETING from the unit's environment.
    '    command: ["/bin/sh", "-c", "echo \\"$$GREETING\\" > index.html && exec python3 -m http.server 8000"]',
    '    stop_grace_period: 20s',
    '',
  ].join('\n');
}

const overrideYaml = [
  'services:',
  '  app:',
  '    ports:',
  '      - "${APP_PORT:?set it in .env}:8000"',
  '',
].join('\n');

e2eTest(
  'compose: environment, command as the main service, .env port, service_healthy, service_completed_successfully, restart: no under watch',
  async (t: TestContext, env) => {
    if (!canUseNetns()) {
      const reason = 'e2e compose: needs root and iproute2 for a network namespace';
      if (process.env.CI === 'true') throw new Error(`${reason} (CI=true: e2e tests must run)`);
      console.error(`# SKIP ${t.name}: ${reason}`);
      t.skip(reason);
      return;
    }
    const proj = await tempProject(t);
    const greeting = `hello-${randomBytes(6).toString('hex')}`;
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    await proj.write('holos.yaml', baseYaml(env.image, greeting));
    await proj.write('holos.override.yaml', overrideYaml);
    await proj.write('.env', `APP_PORT=${port}\n`);
    const holosEnv = { ...proj.env, HOLOS_ACCEL: process.env.HOLOS_ACCEL, HOLOS_FILE: '' };

    await withNetns(`holos-compose-${process.pid}`, async (ns: Netns) => {
      const { holos, holosOk, ps } = holosRunners(ns, proj.dir, holosEnv);
      /** The page app's main process serves, once it answers (it starts late in the boot). */
      const page = async () => {
        const deadline = Date.now() + BOOT_TIMEOUT_MS;
        for (;;) {
          const response = await netnsHttpGet(ns, port).catch(() => '');
          if (response.startsWith('HTTP/1.0 200')) return response;
          if (Date.now() > deadline) throw new Error(`nothing answers on 127.0.0.1:${port}: ${response}`);
          await sleep(2_000);
        }
      };

      await t.test('config shows the merged, interpolated file', async () => {
        const config = JSON.parse((await holosOk(['config', '--format', 'json'])).stdout) as {
          services: Record<string, { ports: string[]; environment?: Record<string, string> }>;
        };
        assert.deepEqual(config.services.app!.ports, [`${port}:8000/tcp`]);
        assert.equal(config.services.app!.environment?.GREETING, greeting);
      });

      await t.test('up: app starts after db is healthy and job has completed', async () => {
        const up = await holosOk(['up', '--json']);
        const events = parseEvents(up.stdout);
        const healthy = events.findIndex(
          (e) => e.type === 'health' && e.phase === 'healthy' && e.service === 'db',
        );
        const appStart = events.findIndex(
          (e) =>
            e.type === 'action' &&
            e.phase === 'start' &&
            e.action.kind === 'instance' &&
            e.action.name === 'app-0',
        );
        const completed = events.findIndex(
          (e) => e.type === 'completion' && e.phase === 'completed' && e.instance === 'job-0',
        );
        assert.ok(healthy >= 0, 'db passed its health gate');
        assert.ok(completed >= 0, 'job passed its completion gate');
        assert.ok(
          appStart > healthy && appStart > completed,
          `app-0 started (event ${appStart}) after db was healthy (event ${healthy}) and job completed (event ${completed})`,
        );
      });

      await t.test("job's command ran once; a failing unit reads as a failure", async () => {
        const marker = await holosOk(['exec', 'job-0', '--', 'cat', '/var/tmp/holos-job']);
        assert.equal(marker.stdout.trim(), 'migrated');
        const show = async (unit: string) =>
          mainServiceState(
            (await holosOk(['exec', 'job-0', '--', ...showCommand.replace(mainUnitName, unit).split(' ')]))
              .stdout,
          );
        assert.deepEqual(await show(mainUnitName), {
          ended: true,
          ok: true,
          why: 'its main service exited 0',
        });
        // A transient unit that exits 3: systemd keeps it, failed, for show to read.
        await holos([
          'exec',
          'job-0',
          '--',
          'sudo',
          'systemd-run',
          '--wait',
          '--unit',
          'holos-e2e-fails',
          '/bin/sh',
          '-c',
          'exit 3',
        ]);
        assert.deepEqual(await show('holos-e2e-fails.service'), {
          ended: true,
          ok: false,
          why: 'its main service exited with status 3 (exit-code)',
        });
      });

      await t.test('the main process has the variable and serves it on the .env port', async () => {
        assert.match(await page(), new RegExp(`\\r\\n\\r\\n${greeting}\\n$`));
        const printed = await holosOk(['exec', 'app-0', '--', 'sh', '-lc', 'echo "$GREETING"']);
        assert.equal(printed.stdout.trim(), greeting, 'a login on the guest sees the environment too');
        const unit = await holosOk(['exec', 'app-0', '--', 'systemctl', 'is-enabled', 'holos-main.service']);
        assert.equal(unit.stdout.trim(), 'enabled');
      });

      await t.test('the main service survives a restart of the VM', async () => {
        await holosOk(['stop', 'app']);
        assert.equal((await ps()).get('app-0')?.state, 'stopped');
        await holosOk(['start', 'app']);
        assert.match(await page(), new RegExp(`${greeting}\\n$`));
      });

      await t.test('watch leaves app off when its guest powers off (restart: "no")', async () => {
        const watch = startHolosIn(t, ns, ['watch', '--resync', '5s'], { cwd: proj.dir, env: holosEnv });
        await watch.waitForStderr(/watching/, 60_000);
        const before = (await ps()).get('app-0')?.pid;
        await holos(['exec', 'app-0', '--', 'sudo', 'systemctl', 'poweroff', '--no-block']);
        await watch.waitForStderr(
          /app-0: its guest powered off; restart: no, so watch leaves it stopped/,
          120_000,
        );
        // Two resyncs later it is still off: watch did not start it.
        await sleep(12_000);
        const row = (await ps()).get('app-0');
        assert.notEqual(row?.state, 'running', `app-0 is ${row?.state} (pid ${row?.pid}, was ${before})`);
        assert.equal((await ps()).get('db-0')?.state, 'running', 'db is left running');
        assert.equal(
          (await ps()).get('job-0')?.state,
          'running',
          'job is left running: its VM outlives its command',
        );
        watch.signal('SIGINT');
        await watch.done;
      });

      await t.test('down', async () => {
        await holosOk(['down']);
        assert.equal((await ps()).size, 0);
      });
    });
  },
);
