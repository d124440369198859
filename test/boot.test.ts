// The serial log as the record of a guest's boots (observe/boot.ts, state/inspect.ts): a real
// first boot's lines (fixtures/serial, from the test image with a failing runcmd), read back
// across chunk boundaries and boot offsets, and the phases and plans that follow from them.

import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { moduleError, scanSerialLog, verdictOf } from '../src/observe/boot.js';
import { firstBootMarker, firstBootReport } from '../src/cloudinit/render.js';
import { phaseOf, readBoot, stateOf, type InstanceState } from '../src/state/inspect.js';
import { projectLayout } from '../src/state/layout.js';
import type { AppliedRecord } from '../src/state/records.js';

const fixture = new URL('../fixtures/serial/degraded-first-boot.txt', import.meta.url);
const degradedBoot = () => readFile(fixture, 'utf8');

const status = (stages: Record<string, string[]>, datasource: string | null = 'DataSourceNoCloud') =>
  JSON.stringify({
    v1: {
      datasource,
      ...Object.fromEntries(Object.entries(stages).map(([stage, errors]) => [stage, { errors }])),
      stage: null,
    },
  });

test("verdictOf reads cloud-init's status.json: ready, degraded, failed", () => {
  assert.deepEqual(verdictOf(status({ init: [], 'modules-final': [] })), { status: 'ready', errors: [] });
  assert.deepEqual(
    verdictOf(
      status({
        init: [],
        'modules-final': [
          "('scripts-user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands'))",
        ],
      }),
    ),
    {
      status: 'degraded',
      errors: ['modules-final: scripts-user failed: Runparts: 1 failures (runcmd) in 1 attempted commands'],
    },
  );
  assert.equal(verdictOf(status({ init: ['no user'], 'modules-final': [] })).status, 'failed');
  assert.equal(verdictOf(status({ 'init-local': ['boom'] })).status, 'failed');
  assert.deepEqual(verdictOf(status({}, null)), {
    status: 'failed',
    errors: ['cloud-init found no datasource (the seed was not read)'],
  });
  assert.equal(verdictOf('null').status, 'failed', 'no status.json at all');
  assert.equal(verdictOf('{ "v1": { "datasou').status, 'degraded', 'a line cut short');
  assert.equal(moduleError('something else'), 'something else');
});

test("the seed's report writes exactly the marker the scanner looks for", () => {
  assert.ok(firstBootReport.includes(`printf '\\n${firstBootMarker} %s\\n'`));
  assert.ok(firstBootReport.endsWith('&'), 'in the background: runcmd goes on at once');
});

async function logOf(text: string) {
  const dir = await mkdtemp(join(tmpdir(), 'holos-boot-'));
  const path = join(dir, 'serial.log');
  await writeFile(path, text);
  return path;
}

test('a real degraded first boot: cloud-init ran, finished, and the verdict names the module', async () => {
  const path = await logOf(await degradedBoot());
  const scan = await scanSerialLog(path, 0, 0);
  assert.equal(scan.cloudInitRan, true);
  assert.deepEqual(scan.thisBoot, { cloudInit: true, finished: true });
  assert.equal(scan.firstBoot?.status, 'degraded');
  assert.deepEqual(scan.firstBoot?.errors, [
    'modules-final: scripts-user failed: Runparts: 1 failures (runcmd) in 1 attempted commands',
  ]);
});

test('offsets: lines of an earlier disk never count, lines of an earlier boot are not this boot', async () => {
  const first = await degradedBoot();
  const interrupted = first.slice(0, first.indexOf("running 'modules:config'"));
  const path = await logOf(`${first}${interrupted}`);
  const newDisk = Buffer.byteLength(first);
  const again = await scanSerialLog(path, newDisk, newDisk);
  assert.equal(again.firstBoot, undefined, "the earlier disk's marker is before the offset");
  assert.equal(again.cloudInitRan, true);
  assert.deepEqual(again.thisBoot, { cloudInit: true, finished: false });

  // A later boot of the same disk: the first boot's verdict stands, this boot has not finished.
  const later = await scanSerialLog(path, 0, newDisk);
  assert.equal(later.firstBoot?.status, 'degraded');
  assert.deepEqual(later.thisBoot, { cloudInit: true, finished: false });
  const laterDone = await logOf(
    `${first}[ 9.1] cloud-init[3]: Cloud-init v. 22.4.2 finished at Wed. Up 9 seconds\n`,
  );
  assert.deepEqual((await scanSerialLog(laterDone, 0, newDisk)).thisBoot, {
    cloudInit: true,
    finished: true,
  });
  assert.equal((await scanSerialLog(path, 0, Buffer.byteLength(first) * 3)).thisBoot.cloudInit, false);
});

test('a marker across a 64 KiB chunk boundary, and a log that ends without a newline', async () => {
  const marker = (await degradedBoot()).split('\n').find((l) => l.startsWith(firstBootMarker))!;
  const filler = `${'x'.repeat(100)}\n`.repeat(655);
  const path = await logOf(`${filler}${marker}`);
  assert.equal((await scanSerialLog(path, 0, 0)).firstBoot?.status, 'degraded');
  await appendFile(path, '\n');
  assert.equal((await scanSerialLog(path, 0, Buffer.byteLength(filler))).thisBoot.finished, true);
  assert.equal((await scanSerialLog(path, 0, Buffer.byteLength(filler) + 1)).thisBoot.finished, false);
  assert.deepEqual(await scanSerialLog(join(path, 'missing'), 0, 0), {
    cloudInitRan: false,
    cloudInitFinished: false,
    thisBoot: { cloudInit: false, finished: false },
  });
});

async function instanceWith(log: string, applied: Partial<AppliedRecord>, pid?: number) {
  const dir = await mkdtemp(join(tmpdir(), 'holos-phase-'));
  const layout = projectLayout(dir, 'p').instance('web-0');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(layout.dir, { recursive: true });
  await writeFile(layout.serialLog, log);
  const record = { state: 'running', spec: { service: 'web', index: 0 }, ...applied } as AppliedRecord;
  const boot = await readBoot(layout, record, pid !== undefined);
  return stateOf('web-0', layout, { applied: record, boot, ...(pid !== undefined && { pid }) });
}

test('phases: booting, provisioning, degraded; a stopped first boot is interrupted', async () => {
  const first = await degradedBoot();
  const cut = (text: string) => first.slice(0, first.indexOf(text));
  const pending = { first_boot: { state: 'pending', serial_offset: 0 }, boot_offset: 0 } as const;
  const phase = async (log: string, live: boolean) =>
    phaseOf(await instanceWith(log, pending, live ? 1 : undefined));
  assert.equal(await phase(cut('Cloud-init v.'), true), 'booting');
  assert.equal(await phase(cut('about to fail'), true), 'provisioning');
  assert.equal(
    await phase(cut(firstBootMarker), true),
    'provisioning',
    "cloud-init's own end is not holos's line",
  );
  assert.equal(await phase(first, true), 'degraded');

  const stopped: InstanceState = await instanceWith(cut('about to fail'), pending);
  assert.equal(phaseOf(stopped), 'exited');
  assert.equal(stopped.boot?.interrupted, true);
  assert.equal(
    (await instanceWith(cut('Cloud-init v.'), pending)).boot?.interrupted,
    false,
    'cloud-init never ran',
  );
  const done = await instanceWith(first, pending);
  assert.deepEqual([done.boot?.firstBoot, done.boot?.interrupted], ['done', false]);
  // Down in the second between cloud-init's end and holos's line: not cut short, verdict unknown.
  const justAfter = await instanceWith(cut(firstBootMarker), pending);
  assert.deepEqual([justAfter.boot?.firstBoot, justAfter.boot?.interrupted], ['pending', false]);
  const { firstBootNow } = await import('../src/state/inspect.js');
  assert.deepEqual(await firstBootNow(justAfter.layout, justAfter.applied), {
    state: 'done',
    serial_offset: 0,
  });
  assert.deepEqual((await firstBootNow(done.layout, done.applied))?.verdict?.status, 'degraded');

  // A record from before first boots were tracked: booted, and ready while it runs.
  assert.equal(phaseOf(await instanceWith('', {}, 1)), 'ready');
  // The verdict kept in the record serves a later boot once cloud-init finished it.
  const verdict = { status: 'degraded' as const, errors: ['x'] };
  const later = { first_boot: { state: 'done' as const, serial_offset: 0, verdict }, boot_offset: 0 };
  assert.equal(phaseOf(await instanceWith(cut('Cloud-init v.'), later, 1)), 'booting');
  assert.equal(phaseOf(await instanceWith(first, later, 1)), 'degraded');
});
