// The private segment on the host, without guests: what the project's switch (dist/switch.js,
// a process of its own) carries between two VM ports, against the multicast group on loopback
// that it replaced (QEMU's `-netdev socket,mcast=…,localaddr=127.0.0.1`, which any local user
// could join). The ports are this process's own: unix servers speaking QEMU's stream framing
// for the switch, UDP sockets in the group for multicast. Two figures each, medians of `runs`:
// throughput of full-size frames (1514 bytes) one way, and the round trip of a small frame.
// What a guest gets is lower under TCG, where the guest's own emulation is the bottleneck.
//
//   npm run build && node --import tsx bench/segment.ts [frames] [round trips] [runs]
//   (multicast needs a route for 224.0.0.0/4; run it in a network namespace with one on lo:
//    ip netns add seg && ip -n seg link set lo up && ip -n seg route add 224.0.0.0/4 dev lo &&
//    ip netns exec seg node --import tsx bench/segment.ts)

import { spawn } from 'node:child_process';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const frames = Number(process.argv[2] ?? 100_000);
const trips = Number(process.argv[3] ?? 5_000);
const runs = Number(process.argv[4] ?? 3);
const dist = join(import.meta.dirname, '..', 'dist', 'switch.js');

const macA = Buffer.from([0x52, 0x54, 0, 0, 0, 0xa]);
const macB = Buffer.from([0x52, 0x54, 0, 0, 0, 0xb]);
const frame = (dst: Buffer, src: Buffer, size: number) =>
  Buffer.concat([dst, src, Buffer.from([0x08, 0x00]), Buffer.alloc(size - 14, 0x5a)]);
const framed = (bytes: Buffer) => {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(bytes.length);
  return Buffer.concat([header, bytes]);
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Two ends of a link: send a frame from one, be told when frames reach the other. */
interface Link {
  send(from: 'a' | 'b', bytes: Buffer): void;
  onFrame(at: 'a' | 'b', fn: (bytes: Buffer) => void): void;
  close(): void;
}

async function switchLink(): Promise<Link> {
  const dir = mkdtempSync(join(tmpdir(), 'holos-seg-'));
  const sockets: Partial<Record<'a' | 'b', Socket>> = {};
  const handlers: Partial<Record<'a' | 'b', (bytes: Buffer) => void>> = {};
  const servers = (['a', 'b'] as const).map((end) => {
    mkdirSync(join(dir, end), { mode: 0o700 });
    const server = createServer((socket) => {
      sockets[end] = socket;
      let pending: Buffer = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        pending = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
        while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
          const length = pending.readUInt32BE(0);
          handlers[end]?.(pending.subarray(4, 4 + length));
          pending = pending.subarray(4 + length);
        }
      });
    });
    server.listen(join(dir, end, 'segment.sock'));
    return server;
  });
  const child = spawn(process.execPath, [dist, dir, join(dir, 'switch.pid')], { stdio: 'inherit' });
  while (!sockets.a || !sockets.b) await sleep(10);
  return {
    send: (from, bytes) => sockets[from]!.write(framed(bytes)),
    onFrame: (at, fn) => (handlers[at] = fn),
    close() {
      child.kill('SIGTERM');
      for (const server of servers) server.close();
      for (const socket of Object.values(sockets)) socket.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function multicastLink(): Promise<Link> {
  const group = '239.1.2.3';
  const port = 40000 + Math.floor(Math.random() * 20000);
  const ends: Record<'a' | 'b', UdpSocket> = {
    a: createSocket({ type: 'udp4', reuseAddr: true }),
    b: createSocket({ type: 'udp4', reuseAddr: true }),
  };
  const handlers: Partial<Record<'a' | 'b', (bytes: Buffer) => void>> = {};
  for (const [end, socket] of Object.entries(ends) as ['a' | 'b', UdpSocket][]) {
    await new Promise<void>((resolve) => socket.bind(port, resolve));
    socket.addMembership(group, '127.0.0.1');
    socket.setMulticastInterface('127.0.0.1');
    socket.setMulticastLoopback(true);
    // Every member gets every frame, its own too: QEMU drops its own by source MAC, as here.
    const own = end === 'a' ? macA : macB;
    socket.on('message', (bytes) => {
      if (!bytes.subarray(6, 12).equals(own)) handlers[end]?.(bytes);
    });
  }
  return {
    send: (from, bytes) => ends[from].send(bytes, port, group),
    onFrame: (at, fn) => (handlers[at] = fn),
    close() {
      for (const socket of Object.values(ends)) socket.close();
    },
  };
}

/** MB/s of full-size frames from a to b (what arrives: multicast may drop under load). */
async function throughput(link: Link): Promise<{ mbps: number; delivered: number }> {
  let received = 0;
  let last = 0;
  link.onFrame('b', () => {
    received++;
    last = performance.now();
  });
  const bytes = frame(macB, macA, 1514);
  // a announces itself first, so the switch learns where macA is (as a guest's ARP does).
  link.send('b', frame(macA, macB, 60));
  await sleep(50);
  const started = performance.now();
  for (let i = 0; i < frames; i++) {
    link.send('a', bytes);
    if (i % 256 === 255) await new Promise((resolve) => setImmediate(resolve));
  }
  // Until nothing more arrives for 500 ms.
  for (let seen = -1; seen !== received;) {
    seen = received;
    await sleep(500);
  }
  const seconds = (last - started) / 1000;
  return { mbps: (received * 1514) / seconds / 1e6, delivered: received / frames };
}

/** Median round trip of a 64-byte frame a → b → a, in µs. */
async function roundTrip(link: Link): Promise<number> {
  const samples: number[] = [];
  link.onFrame('b', () => link.send('b', frame(macA, macB, 64)));
  for (let i = 0; i < trips; i++) {
    const answered = new Promise<void>((resolve) => link.onFrame('a', () => resolve()));
    const started = performance.now();
    link.send('a', frame(macB, macA, 64));
    await answered;
    samples.push((performance.now() - started) * 1000);
  }
  return median(samples);
}

const backends: [string, () => Promise<Link>][] = [
  ['switch (unix sockets, 0700 dir)', switchLink],
  ['multicast on 127.0.0.1 (before)', multicastLink],
];
console.log(
  `${frames} frames of 1514 bytes one way, ${trips} round trips of 64 bytes; medians of ${runs} runs`,
);
for (const [name, make] of backends) {
  const results: { mbps: number; delivered: number; rtt: number }[] = [];
  try {
    for (let run = 0; run < runs; run++) {
      const link = await make();
      try {
        const { mbps, delivered } = await throughput(link);
        await sleep(200); // what the throughput run left in flight drains
        results.push({ mbps, delivered, rtt: await roundTrip(link) });
      } finally {
        link.close();
      }
    }
  } catch (error) {
    console.log(`${name}: not measured here (${(error as Error).message})`);
    continue;
  }
  console.log(
    `${name}: ${median(results.map((r) => r.mbps)).toFixed(0)} MB/s, ${(median(results.map((r) => r.delivered)) * 100).toFixed(1)}% delivered; round trip ${median(results.map((r) => r.rtt)).toFixed(0)} µs`,
  );
}
