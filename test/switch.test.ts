// The private segment's switch (net/switch.ts) and the process that runs it (resources/
// segment.ts). The VMs' sockets are unix servers of the test's own, speaking what QEMU's stream
// netdev speaks (a 4-byte big-endian length, then the frame), and one real QEMU; the switch is
// the real one, in its own process for the lifecycle tests. A second Unix user (nobody) tries to
// reach a VM's socket in a state dir made as holos makes it, and must fail.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Switch, segmentSocketName } from '../src/net/switch.js';
import { isOurQemu } from '../src/observe/process.js';
import { observeSegment, startSwitch, stopSwitch } from '../src/resources/segment.js';
import { projectLayout } from '../src/state/layout.js';

const root = mkdtempSync(join(tmpdir(), 'holos-sw-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A VM's end of the segment: a unix server on `<dir>/<name>/segment.sock`, keeping what it receives. */
async function vmPort(dir: string, name: string, network = 'default') {
  mkdirSync(join(dir, name), { recursive: true, mode: 0o700 });
  const received: Buffer[] = [];
  let client: Socket | undefined;
  let connections = 0;
  const server: Server = createServer((socket) => {
    client = socket;
    connections++;
    socket.on('data', (chunk: Buffer) => received.push(chunk));
  });
  await new Promise<void>((resolve) => server.listen(join(dir, name, segmentSocketName(network)), resolve));
  return {
    server,
    received: () => Buffer.concat(received),
    connections: () => connections,
    clear: () => received.splice(0),
    send: (bytes: Buffer) => client!.write(bytes),
    drop: () => client?.destroy(),
  };
}

const mac = (last: number) => Buffer.from([0x52, 0x54, 0x00, 0, 0, last]);
const broadcast = Buffer.alloc(6, 0xff);
/** A frame from `src` to `dst` with a payload, framed as QEMU's stream netdev frames it. */
function packet(dst: Buffer, src: Buffer, payload: string): Buffer {
  const frame = Buffer.concat([dst, src, Buffer.from([0x08, 0x00]), Buffer.from(payload)]);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(frame.length);
  return Buffer.concat([header, frame]);
}

async function until(what: string, ok: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test('the switch floods broadcasts and unknown destinations, learns MACs, and sends unicast to one port', async () => {
  const dir = join(root, 'forward');
  const [a, b, c] = [await vmPort(dir, 'a-0'), await vmPort(dir, 'b-0'), await vmPort(dir, 'c-0')];
  const sw = new Switch(dir, segmentSocketName('default'));
  await sw.start(20);
  try {
    await until('three ports', () => sw.connected().length === 3);
    const hello = packet(broadcast, mac(1), 'who is there');
    a.send(hello);
    await until('the broadcast at b and c', () => b.received().equals(hello) && c.received().equals(hello));
    assert.equal(a.received().length, 0, 'not back to where it came from');
    [b, c].forEach((p) => p.clear());

    // b answers a: a's MAC was learnt from the broadcast, so only a gets it.
    const reply = packet(mac(1), mac(2), 'b here');
    b.send(reply);
    await until('the reply at a', () => a.received().equals(reply));
    // A frame to a MAC no one has sent from yet goes everywhere but back; one cut in two arrives whole.
    const unknown = packet(mac(9), mac(3), 'anyone?');
    c.send(unknown.subarray(0, 7));
    await sleep(30);
    c.send(unknown.subarray(7));
    await until(
      'the unknown unicast at a and b',
      () => a.received().length > reply.length && b.received().length > 0,
    );
    assert.ok(a.received().subarray(reply.length).equals(unknown));
    assert.ok(b.received().equals(unknown));
    assert.equal(c.received().length, 0, 'c got nothing: the reply went to a alone');
  } finally {
    sw.close();
    for (const p of [a, b, c]) p.server.close();
  }
});

test('a port whose VM went away is forgotten, and connected again when it listens again', async () => {
  const dir = join(root, 'reconnect');
  const [a, b] = [await vmPort(dir, 'a-0'), await vmPort(dir, 'b-0')];
  const sw = new Switch(dir, segmentSocketName('default'));
  await sw.start(20);
  try {
    await until('two ports', () => sw.connected().length === 2);
    b.drop();
    await until('b connected again', () => b.connections() === 2 && sw.connected().length === 2);
    const hello = packet(broadcast, mac(1), 'still there?');
    a.send(hello);
    await until('the broadcast at b over the new connection', () => b.received().equals(hello));
  } finally {
    sw.close();
    a.server.close();
    b.server.close();
  }
});

test('two projects of one name in two state dirs: each switch carries only its own VMs', async () => {
  // Before the switch, both were one multicast group (derived from the name): each saw the other.
  const dirs = ['one', 'two'].map((state) => join(root, state, 'instances', 'app'));
  const ports = await Promise.all(
    dirs.map(async (dir) => [await vmPort(dir, 'web-0'), await vmPort(dir, 'web-1')]),
  );
  const switches = dirs.map((dir) => new Switch(dir, segmentSocketName('default')));
  for (const sw of switches) await sw.start(20);
  try {
    await until('both switches connected', () => switches.every((sw) => sw.connected().length === 2));
    const hello = packet(broadcast, mac(1), 'project one only');
    ports[0]![0]!.send(hello);
    await until('the broadcast at one/web-1', () => ports[0]![1]!.received().equals(hello));
    await sleep(100);
    assert.deepEqual(
      ports[1]!.map((p) => p.received().length),
      [0, 0],
      "project two's VMs saw nothing of it",
    );
  } finally {
    for (const sw of switches) sw.close();
    for (const p of ports.flat()) p.server.close();
  }
});

test("a project's networks are apart: a switch connects only to its own network's sockets", async () => {
  const dir = join(root, 'networks');
  // api-0 is on both networks; web-0 only on front, db-0 only on back.
  const front = [await vmPort(dir, 'web-0', 'front'), await vmPort(dir, 'api-0', 'front')];
  const back = [await vmPort(dir, 'api-0', 'back'), await vmPort(dir, 'db-0', 'back')];
  const switches = [new Switch(dir, segmentSocketName('front')), new Switch(dir, segmentSocketName('back'))];
  for (const sw of switches) await sw.start(20);
  try {
    await until('both switches connected', () => switches.every((sw) => sw.connected().length === 2));
    assert.deepEqual(switches[0]!.connected(), [
      join(dir, 'api-0', 'segment-front.sock'),
      join(dir, 'web-0', 'segment-front.sock'),
    ]);
    const hello = packet(broadcast, mac(1), 'front only');
    front[0]!.send(hello);
    await until('the broadcast at api-0 on front', () => front[1]!.received().equals(hello));
    await sleep(100);
    assert.deepEqual(
      back.map((p) => p.received().length),
      [0, 0],
      'nothing of front reached back',
    );
  } finally {
    for (const sw of switches) sw.close();
    for (const p of [...front, ...back]) p.server.close();
  }
});

const hasQemu = spawnSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' }).error === undefined;

/** Skips loudly without the tool (a failure under CI). */
function needs(t: TestContext, ok: boolean, why: string): boolean {
  if (ok) return true;
  if (process.env.CI === 'true') assert.fail(`${why} (required under CI=true)`);
  console.error(`# SKIP ${t.name}: ${why}`);
  t.skip(why);
  return false;
}

test("the switch process: started detached, observed by its pid file, connects to a real QEMU's NIC, stopped", async (t) => {
  if (!needs(t, hasQemu, 'qemu-system-x86_64 not installed')) return;
  const layout = projectLayout(join(root, 'state'), 'seg');
  const vm = layout.instance('vm-0');
  mkdirSync(vm.dir, { recursive: true, mode: 0o700 });
  const qemuPid = join(vm.dir, 'qemu.pid');
  execFileSync('qemu-system-x86_64', [
    ...['-machine', 'q35,accel=tcg', '-nodefaults', '-display', 'none', '-m', '64', '-S'],
    ...['-netdev', `stream,id=net1,server=on,addr.type=unix,addr.path=${vm.segmentSocket('default')}`],
    ...['-device', 'virtio-net-pci,netdev=net1', '-daemonize', '-pidfile', qemuPid],
  ]);
  const qemu = Number(execFileSync('cat', [qemuPid], { encoding: 'utf8' }).trim());
  t.after(() => process.kill(qemu, 'SIGKILL'));

  assert.deepEqual(await observeSegment(layout, 'default'), {});
  const pid = await startSwitch(layout, 'default');
  t.after(() => stopSwitch(layout, 'default', pid));
  assert.deepEqual(await observeSegment(layout, 'default'), { pid });
  // QEMU says on its monitor whom its NIC is connected to: the switch, over the unix socket.
  await until('the switch connected to QEMU', () => {
    const peers = spawnSync('ss', ['-xp'], { encoding: 'utf8' }).stdout;
    return (
      peers.split('\n').some((l) => l.includes(vm.segmentSocket('default'))) && peers.includes(`pid=${pid},`)
    );
  });

  process.kill(pid, 'SIGKILL');
  while (await isOurQemu(pid, layout.dir)) await sleep(10);
  assert.deepEqual(
    await observeSegment(layout, 'default'),
    { died: true },
    'a dead switch is drift, not absence',
  );
  const again = await startSwitch(layout, 'default');
  assert.notEqual(again, pid);
  await stopSwitch(layout, 'default', again);
  assert.deepEqual(await observeSegment(layout, 'default'), {});
  assert.equal(await isOurQemu(again, layout.dir), false);
});

test("another Unix user cannot reach a VM's segment socket in holos's state dir", async (t) => {
  const root_ = process.getuid?.() === 0;
  if (!needs(t, root_ && spawnSync('runuser', ['--help']).error === undefined, 'needs root and runuser'))
    return;
  // The state dir and the instance dir as holos makes them (0700), the socket as QEMU makes it.
  const state = join(root, 'private');
  mkdirSync(state, { mode: 0o700 });
  const vm = await vmPort(join(state, 'instances', 'app'), 'web-0');
  try {
    const path = join(state, 'instances', 'app', 'web-0', segmentSocketName('default'));
    const probe = `require('net').connect(${JSON.stringify(path)}).on('connect', () => { console.log('connected'); process.exit(0); }).on('error', (e) => { console.log(e.code); process.exit(1); })`;
    const asNobody = (argv: string[]) =>
      spawnSync('runuser', ['-u', 'nobody', '--', ...argv], { encoding: 'utf8' });
    // nobody cannot even look at the path (connecting needs the same search permission)…
    const look = asNobody(['stat', path]);
    assert.notEqual(look.status, 0, look.stdout);
    assert.match(look.stderr, /Permission denied/);
    // …nor connect, tried with a node nobody may run (the one running this test may live in
    // root's home, as npm exec's do).
    const node = [process.execPath, '/usr/bin/node', '/usr/local/bin/node'].find(
      (candidate) => asNobody([candidate, '-e', '0']).status === 0,
    );
    if (node) assert.equal(asNobody([node, '-e', probe]).stdout.trim(), 'EACCES');
    else
      t.diagnostic(
        'no node that nobody may run here: the connect is not tried; the stat above stands for it',
      );
    const owner = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8' });
    assert.equal(owner.stdout.trim(), 'connected', 'the owner can');
  } finally {
    vm.server.close();
  }
});
