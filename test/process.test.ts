import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, test } from 'node:test';
import { freePort, isPortFree } from '../src/observe/ports.js';
import { isOurQemu, readPid } from '../src/observe/process.js';

const workDir = mkdtempSync(join(tmpdir(), 'holos-process-'));
after(() => rmSync(workDir, { recursive: true, force: true }));

test('readPid reads a pid file and treats anything else as no pid', async () => {
  const file = join(workDir, 'qemu.pid');
  assert.equal(await readPid(file), undefined);
  for (const [text, expected] of [
    ['4242\n', 4242],
    ['  17  ', 17],
    ['', undefined],
    ['0\n', undefined],
    ['-3\n', undefined],
    ['12abc\n', undefined],
    ['1.5\n', undefined],
  ] as const) {
    writeFileSync(file, text);
    assert.equal(await readPid(file), expected, JSON.stringify(text));
  }
  await assert.rejects(readPid(workDir), { code: 'EISDIR' });
});

test('a daemonized QEMU is found by its pid file and QMP socket path', async (t) => {
  const dir = mkdtempSync(join(workDir, 'instance-'));
  const socket = join(dir, 'qmp.sock');
  const pidFile = join(dir, 'qemu.pid');
  t.after(async () => {
    const pid = await readPid(pidFile);
    if (pid !== undefined && (await isOurQemu(pid, socket))) process.kill(pid, 'SIGKILL');
  });
  // -daemonize returns once QEMU is set up, with the pid file written.
  execFileSync('qemu-system-x86_64', [
    '-machine',
    'none',
    '-nodefaults',
    '-display',
    'none',
    '-S',
    '-qmp',
    `unix:${socket},server=on,wait=off`,
    '-daemonize',
    '-pidfile',
    pidFile,
  ]);
  const pid = await readPid(pidFile);
  assert.ok(pid !== undefined);

  assert.equal(await isOurQemu(pid, socket), true);
  assert.equal(await isOurQemu(pid, join(workDir, 'other', 'qmp.sock')), false);

  process.kill(pid, 'SIGKILL');
  // QEMU is not our child: wait until the kernel has taken it away.
  while (await isOurQemu(pid, socket)) await sleep(10);
  assert.equal(await isOurQemu(pid, socket), false);
});

test('a live process that is not this QEMU (a reused pid) does not count', async () => {
  const child = spawn('sleep', ['1000'], { stdio: 'ignore' });
  const exited = once(child, 'exit');
  const pid = child.pid!;
  try {
    assert.equal(await isOurQemu(pid, join(workDir, 'qmp.sock')), false);
    assert.equal(await isOurQemu(pid, '1000'), true); // the marker is matched within the arguments
  } finally {
    child.kill('SIGKILL');
    await exited;
  }
  assert.equal(await isOurQemu(pid, '1000'), false);
});

test('impossible pids and an empty marker are never ours', async () => {
  for (const pid of [0, -1, Number.NaN, 1.5]) assert.equal(await isOurQemu(pid, 'x'), false);
  assert.equal(await isOurQemu(process.pid, ''), false);
  assert.equal(await isOurQemu(process.pid, 'node'), true);
});

test('freePort gives a TCP port that isPortFree agrees is free', async () => {
  const port = await freePort();
  assert.ok(port > 0 && port < 65536);
  assert.equal(await isPortFree(port), true);
});

test('freePort never hands out a port twice, though the kernel offers one again once let go', async () => {
  // VMs started at the same time each get their SSH forward from freePort before their QEMU
  // binds it: the same port twice and one of them fails to start.
  const ports: number[] = [];
  for (let i = 0; i < 300; i++) ports.push(await freePort());
  assert.equal(new Set(ports).size, ports.length);
});

test('a listening TCP port is taken, also when bound on the wildcard address', async () => {
  for (const host of ['127.0.0.1', '0.0.0.0']) {
    const server = createServer();
    server.listen(0, host);
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    try {
      assert.equal(await isPortFree(port), false, host);
      assert.equal(await isPortFree(port, '127.0.0.1', 'udp'), true, `${host} udp`);
    } finally {
      server.close();
      await once(server, 'close');
    }
    assert.equal(await isPortFree(port), true, `${host} after close`);
  }
});

test('a bound UDP port is taken for UDP', async () => {
  const socket = createSocket('udp4');
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  const { port } = socket.address();
  try {
    assert.equal(await isPortFree(port, '127.0.0.1', 'udp'), false);
  } finally {
    socket.close();
    await once(socket, 'close');
  }
  assert.equal(await isPortFree(port, '127.0.0.1', 'udp'), true);
});

test('an address that is not on this host rejects instead of answering', async () => {
  // 192.0.2.0/24 is reserved for documentation (RFC 5737): never a local address.
  await assert.rejects(isPortFree(await freePort(), '192.0.2.1'), { code: 'EADDRNOTAVAIL' });
  await assert.rejects(isPortFree(await freePort(), '192.0.2.1', 'udp'), { code: 'EADDRNOTAVAIL' });
});
