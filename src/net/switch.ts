import { readdir, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { writeAtomically } from '../util/fs.js';

// The project's private segment: an Ethernet switch in a process of its own, reachable only
// through unix sockets inside the owner's 0700 state dir, so no other local user can read or
// inject a frame, and two projects of one name in two state dirs never meet. Each VM's private
// NIC is a QEMU `stream` netdev listening on `<instance dir>/segment.sock`; the switch connects
// to every one it finds, reads frames (a 4-byte big-endian length, then the frame, as QEMU's
// stream netdev frames them), learns behind which port each source MAC is and forwards: to that
// port, or, for broadcast, multicast and unknown destinations, to every other port. QEMU listens
// again when its client goes, so a switch started anew reconnects every VM without a restart.

/**
 * The socket a VM's NIC on a network listens on, in its instance directory. The default
 * network's keeps the name it had before named networks, so running VMs stay connected.
 */
export const segmentSocketName = (network: string) =>
  network === 'default' ? 'segment.sock' : `segment-${network}.sock`;

/** A port whose queue holds this much is congested: frames to it are dropped, as a switch does. */
const congested = 4 * 1024 * 1024;
const headerBytes = 4;
const ethernetHeader = 14;

interface Port {
  path: string;
  socket: Socket;
  pending: Buffer;
}

export class Switch {
  private readonly ports = new Map<string, Port>();
  private readonly connecting = new Set<string>();
  private readonly macs = new Map<string, Port>();
  private scanning: NodeJS.Timeout | undefined;
  private closed = false;

  private readonly instancesDir: string;
  private readonly socketName: string;

  /**
   * `instancesDir`: the project's instance directories, each maybe with a VM's socket named
   * `socketName` (segmentSocketName of the switch's network).
   */
  constructor(instancesDir: string, socketName: string) {
    this.instancesDir = instancesDir;
    this.socketName = socketName;
  }

  /** Connects to every VM socket there now, and keeps looking for new ones every `everyMs`. */
  async start(everyMs = 500): Promise<void> {
    await this.scan();
    this.scanning = setInterval(() => void this.scan(), everyMs);
  }

  /** The sockets connected now. */
  connected(): string[] {
    return [...this.ports.keys()].sort();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.scanning);
    for (const port of this.ports.values()) port.socket.destroy();
    this.ports.clear();
    this.macs.clear();
  }

  async scan(): Promise<void> {
    const names = await readdir(this.instancesDir).catch(() => []);
    await Promise.all(names.map((name) => this.attach(join(this.instancesDir, name, this.socketName))));
  }

  /** Connects to one VM's socket unless it is connected already; a socket not there is left for the next scan. */
  private attach(path: string): Promise<void> {
    if (this.closed || this.ports.has(path) || this.connecting.has(path)) return Promise.resolve();
    this.connecting.add(path);
    return new Promise((resolve) => {
      const socket = connect(path);
      socket.once('connect', () => {
        this.connecting.delete(path);
        if (this.closed) {
          socket.destroy();
          return resolve();
        }
        const port: Port = { path, socket, pending: Buffer.alloc(0) };
        this.ports.set(path, port);
        socket.on('data', (chunk: Buffer) => this.receive(port, chunk));
        socket.once('close', () => this.detach(port));
        resolve();
      });
      socket.once('error', () => {
        // Not there yet, or its QEMU is gone: the next scan tries again.
        this.connecting.delete(path);
        socket.destroy();
        resolve();
      });
    });
  }

  private detach(port: Port): void {
    if (this.ports.get(port.path) === port) this.ports.delete(port.path);
    for (const [mac, at] of this.macs) if (at === port) this.macs.delete(mac);
  }

  private receive(port: Port, chunk: Buffer): void {
    let data = port.pending.length > 0 ? Buffer.concat([port.pending, chunk]) : chunk;
    while (data.length >= headerBytes) {
      const length = data.readUInt32BE(0);
      if (data.length < headerBytes + length) break;
      // The packet as it came, header and all: forwarded without a copy.
      this.forward(port, data.subarray(0, headerBytes + length));
      data = data.subarray(headerBytes + length);
    }
    port.pending = data;
  }

  private forward(from: Port, packet: Buffer): void {
    if (packet.length < headerBytes + ethernetHeader) return;
    const destination = packet.subarray(headerBytes, headerBytes + 6);
    const source = packet.subarray(headerBytes + 6, headerBytes + 12).toString('hex');
    this.macs.set(source, from);
    // The group bit: broadcast and multicast go everywhere, as does a MAC not learnt yet.
    const known = (destination[0]! & 1) === 0 ? this.macs.get(destination.toString('hex')) : undefined;
    if (known) {
      if (known !== from) send(known, packet);
      return;
    }
    for (const port of this.ports.values()) if (port !== from) send(port, packet);
  }
}

function send(port: Port, packet: Buffer): void {
  if (port.socket.writableLength > congested) return;
  port.socket.write(packet);
}

/**
 * The switch process (net/switch-main.ts): writes its pid file, switches until SIGTERM or
 * SIGINT, then removes the pid file.
 */
export async function runSwitch(instancesDir: string, pidFile: string, socketName: string): Promise<void> {
  const sw = new Switch(instancesDir, socketName);
  await sw.start();
  await writeAtomically(pidFile, `${process.pid}\n`);
  const stop = () => {
    sw.close();
    void rm(pidFile, { force: true }).finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
