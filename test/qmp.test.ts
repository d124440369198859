import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, test, type TestContext } from 'node:test';
import { QmpClient, QmpError, queryStatus, type QmpEvent } from '../src/observe/qmp.js';

const workDir = mkdtempSync(join(tmpdir(), 'holos-qmp-'));
after(() => rmSync(workDir, { recursive: true, force: true }));

interface Qemu {
  process: ChildProcess;
  socketPath: string;
  exited: Promise<unknown>;
}

/** A real QEMU with no guest: paused before the first instruction (-S), with a live QMP socket. */
async function startQemu(t: TestContext, name: string): Promise<Qemu> {
  const socketPath = join(workDir, `${name}.sock`);
  const qemu = spawn(
    'qemu-system-x86_64',
    [
      '-machine',
      'q35',
      '-nodefaults',
      '-display',
      'none',
      '-m',
      '64',
      '-S',
      '-qmp',
      `unix:${socketPath},server=on,wait=off`,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const exited = once(qemu, 'exit');
  t.after(async () => {
    if (qemu.exitCode === null && qemu.signalCode === null) {
      qemu.kill('SIGCONT'); // a test may have stopped it
      qemu.kill('SIGKILL');
      await exited;
    }
  });
  await waitForSocket(qemu, socketPath);
  return { process: qemu, socketPath, exited };
}

/** QEMU creates the socket during start-up: retry until a connection works (or QEMU died). */
async function waitForSocket(qemu: ChildProcess, socketPath: string): Promise<void> {
  for (;;) {
    const client = await QmpClient.connect(socketPath).catch(() => undefined);
    if (client) return client.close();
    if (qemu.exitCode !== null) throw new Error(`QEMU exited with ${qemu.exitCode}`);
    await sleep(20);
  }
}

function nextEvent(client: QmpClient, name: string): Promise<QmpEvent> {
  return new Promise((resolve) => {
    const listener = (event: QmpEvent) => {
      if (event.event !== name) return;
      client.off('event', listener);
      resolve(event);
    };
    client.on('event', listener);
  });
}

test('connects, negotiates capabilities and reads the run state', async (t) => {
  const qemu = await startQemu(t, 'status');
  const client = await QmpClient.connect(qemu.socketPath);
  t.after(() => client.close());

  const status = await client.execute<{ status: string; running: boolean }>('query-status');
  assert.equal(status.status, 'prelaunch');
  assert.equal(status.running, false);
  const version = await client.execute<{ qemu: { major: number } }>('query-version');
  assert.ok(version.qemu.major >= 7);
  client.close();

  assert.equal(await queryStatus(qemu.socketPath), 'prelaunch');
});

test('cont runs the machine, stop pauses it and emits STOP', async (t) => {
  const qemu = await startQemu(t, 'cont');
  const client = await QmpClient.connect(qemu.socketPath);
  t.after(() => client.close());

  await client.execute('cont');
  assert.equal((await client.execute<{ status: string }>('query-status')).status, 'running');

  const stopped = nextEvent(client, 'STOP');
  await client.execute('stop');
  const event = await stopped;
  assert.equal(typeof event.timestamp?.seconds, 'number');
  assert.equal((await client.execute<{ status: string }>('query-status')).status, 'paused');
});

test('a failed command rejects with QmpError and the connection stays usable', async (t) => {
  const qemu = await startQemu(t, 'error');
  const client = await QmpClient.connect(qemu.socketPath);
  t.after(() => client.close());

  const error = await client.execute('no-such-command').then(
    () => assert.fail('expected a QmpError'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof QmpError);
  assert.equal(error.class, 'CommandNotFound');
  assert.match(error.desc, /no-such-command/);

  await assert.rejects(client.execute('human-monitor-command', { 'no-such-argument': 1 }), (e: unknown) => {
    return e instanceof QmpError && e.class === 'GenericError';
  });
  assert.equal((await client.execute<{ status: string }>('query-status')).status, 'prelaunch');
});

test('quit resolves, emits SHUTDOWN and close, and QEMU exits', async (t) => {
  const qemu = await startQemu(t, 'quit');
  const client = await QmpClient.connect(qemu.socketPath);
  const shutdown = nextEvent(client, 'SHUTDOWN');
  const closed = once(client, 'close');

  await client.execute('quit');
  const event = await shutdown;
  assert.equal((event.data as { guest: boolean }).guest, false);
  await closed;
  await qemu.exited;
  assert.equal(qemu.process.exitCode, 0);
  assert.ok(client.closed);
  await assert.rejects(client.execute('query-status'), /connection closed/);
});

test('QEMU dying fails pending and later commands cleanly', async (t) => {
  const qemu = await startQemu(t, 'killed');
  const client = await QmpClient.connect(qemu.socketPath);
  const closed = once(client, 'close');
  qemu.process.kill('SIGSTOP'); // so the command is surely pending when QEMU dies
  const pending = client.execute('query-status');
  qemu.process.kill('SIGKILL');
  await assert.rejects(pending, /killed\.sock: connection closed/);
  await closed;
  await assert.rejects(client.execute('query-status'), /connection closed/);
});

test('connecting to a missing socket or a plain file rejects cleanly', async () => {
  const missing = join(workDir, 'missing.sock');
  await assert.rejects(QmpClient.connect(missing), (e: unknown) => {
    return (
      e instanceof Error && e.message.includes(`${missing}: cannot connect`) && e.message.includes('ENOENT')
    );
  });
  await assert.rejects(queryStatus(missing), /ENOENT/);
  await assert.rejects(QmpClient.connect(join(workDir)), /QMP/);
});

test('timeouts: a second client gets no greeting, a frozen QEMU gets no reply', async (t) => {
  const qemu = await startQemu(t, 'timeout');
  const first = await QmpClient.connect(qemu.socketPath);
  t.after(() => first.close());

  // QEMU serves one QMP client per socket: the second one waits for a greeting that never comes.
  await assert.rejects(QmpClient.connect(qemu.socketPath, { timeoutMs: 200 }), /no greeting within 200 ms/);

  qemu.process.kill('SIGSTOP');
  await assert.rejects(
    first.execute('query-status', undefined, { timeoutMs: 200 }),
    /no reply .* within 200 ms/,
  );
  qemu.process.kill('SIGCONT');
  // The late reply to the timed-out command is dropped; the next command gets its own.
  assert.equal((await first.execute<{ status: string }>('query-status')).status, 'prelaunch');
});

test('open: commands sent before the greeting are answered in order, also by a QEMU busy with another client', async (t) => {
  const qemu = await startQemu(t, 'pipelined');
  const { client, ready } = QmpClient.open(qemu.socketPath);
  t.after(() => client.close());
  // Written at once, with qmp_capabilities, before any byte came back.
  const status = client.execute<{ status: string }>('query-status');
  await ready;
  assert.equal((await status).status, 'prelaunch');
  client.close();

  // A second client's query waits unread while the first is served, and is answered when it leaves.
  const first = await QmpClient.connect(qemu.socketPath);
  const second = queryStatus(qemu.socketPath, 5_000);
  const early = await Promise.race([second.then(() => 'answered'), sleep(300).then(() => 'waiting')]);
  assert.equal(early, 'waiting');
  first.close();
  assert.equal(await second, 'prelaunch');
});
