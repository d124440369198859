// The private segment as two guests see it (issue #19): iperf3 throughput and ping round trips
// between two VMs of one project, over the project's switch (today: each private NIC is a QEMU
// `-netdev stream,server=on` on `<instance dir>/segment.sock`, and `dist/switch.js` connects to
// every one) and over the multicast group on loopback it replaced (`-netdev socket,mcast=…,
// localaddr=127.0.0.1`). bench/segment.ts measures the segment alone, without guests.
//
// "switch": `holos up --wait` of two services, a and b, booted from the test image
// (scripts/build-test-image.sh, with iperf3 and ping). While they run, the QEMU command lines
// holos gave them are read from /proc/<pid>/cmdline. "multicast": `holos stop`, then the same two
// command lines started by hand with net1 swapped for a socket netdev in one multicast group;
// the disks are the ones holos made, already provisioned, and the seed still writes /etc/hosts,
// so `b` resolves to 10.10.0.3 as before. In each, over SSH with the project key: `iperf3 -s -D`
// in b, `iperf3 -c b -t <seconds> -J` in a, then `ping -c <pings> -i 0.2 b` in a.
//
// The multicast group needs a route for 224.0.0.0/4: the bench makes a network namespace with
// one on lo, runs itself again inside it, and deletes it at the end. Root; two VMs under TCG on
// a 2-core host take about three and a half minutes with the defaults.
//
//   npm run build && node --import tsx bench/guest-net.ts [seconds] [pings]   (default 10 and 50)

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, execCollect, type SshClient } from '../src/ssh/exec.js';

const seconds = Number(process.argv[2] ?? 10);
const pings = Number(process.argv[3] ?? 50);
const checkout = resolve(import.meta.dirname, '..');
const nsVariable = 'HOLOS_BENCH_GUEST_NET_NS';
const project = 'gnet';
const services = ['a', 'b'] as const;
type Service = (typeof services)[number];

interface Figures {
  /** iperf3 a → b, bits per second as the sender and the receiver counted them. */
  sentBps: number;
  receivedBps: number;
  retransmits: number;
  /** ping a → b, milliseconds. */
  rtt: { min: number; avg: number; max: number; mdev: number };
  lost: number;
  /** From start to both guests answering SSH with cloud-init done. */
  bootMs: number;
}

const elapsed = (ms: number) => `${(ms / 1000).toFixed(0)} s`;

/** Runs this file again inside a new namespace with a multicast route on lo; deletes it after. */
function inNamespace(): never {
  const ns = `holos-bench-guest-net-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  let status: number | null;
  try {
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    execFileSync('ip', ['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'lo']);
    // Ctrl-C reaches the child too (one process group): it cleans up, then this deletes the namespace.
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => undefined);
    const argv = [...process.execArgv, process.argv[1]!, ...process.argv.slice(2)];
    const child = spawnSync('ip', ['netns', 'exec', ns, process.execPath, ...argv], {
      stdio: 'inherit',
      env: { ...process.env, [nsVariable]: ns },
    });
    status = child.status;
  } finally {
    execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
  }
  process.exit(status ?? 1);
}

if (!process.env[nsVariable]) inNamespace();

// Inside the namespace from here on.

const image = execFileSync(join(checkout, 'scripts', 'build-test-image.sh'), ['--print-path'])
  .toString()
  .trim();
const root = mkdtempSync('/tmp/holos-guest-net-'); // 0700
const stateDir = join(root, 'state');
const composeFile = join(root, 'holos.yaml');
const instanceDir = (service: Service) => join(stateDir, 'instances', project, `${service}-0`);
writeFileSync(
  composeFile,
  [
    `name: ${project}`,
    'services:',
    ...services.flatMap((service) => [
      `  ${service}:`,
      `    image: ${JSON.stringify(image)}`,
      '    vm: { vcpu: 1, memory_mb: 512 }',
      '    stop_grace_period: 20s',
    ]),
    '',
  ].join('\n'),
);

/** holos from this checkout on the bench's project; throws on a non-zero exit. */
function holos(...args: string[]): string {
  const result = spawnSync(
    process.execPath,
    [join(checkout, 'dist', 'cli.js'), '--state-dir', stateDir, '-f', composeFile, ...args],
    { cwd: root, env: { ...process.env, HOLOS_ACCEL: process.env.HOLOS_ACCEL ?? 'tcg' }, encoding: 'utf8' },
  );
  if (result.status !== 0) throw new Error(`holos ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/** A process's command line, NULs as spaces; undefined once it is gone or a zombie. */
function cmdlineOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return undefined;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return undefined;
  }
}

/** The pids of every process whose command line names this run's directory (QEMUs, the switch). */
const oursRunning = () =>
  readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name) && Number(name) !== process.pid)
    .map(Number)
    .filter((pid) => cmdlineOf(pid)?.includes(root));

async function untilGone(pids: number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some((pid) => oursRunning().includes(pid))) {
    if (Date.now() > deadline) throw new Error(`still running after ${timeoutMs / 1000}s: ${pids.join(' ')}`);
    await sleep(200);
  }
}

/** An SSH session to a service's guest with the project key, its host key pinned as holos does. */
async function ssh(service: Service, port: number, user: string): Promise<SshClient> {
  const target = {
    port,
    username: user,
    privateKey: readFileSync(join(stateDir, 'ssh', project, 'id_ed25519'), 'utf8'),
    hostPublicKey: readFileSync(join(instanceDir(service), 'hostkey', 'id_ed25519.pub'), 'utf8'),
    timeoutMs: 10_000,
  };
  const deadline = Date.now() + 5 * 60_000;
  for (;;) {
    try {
      return await connect(target);
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(2_000); // not listening yet: the guest is still booting
    }
  }
}

/** Runs `command` in the guest; throws unless it exits 0 (or with one of `ok`). */
async function sh(client: SshClient, command: string, ok = [0]): Promise<string> {
  const result = await execCollect(client, command, (seconds + 120) * 1000);
  if (!ok.includes(result.code ?? -1))
    throw new Error(`${command}: exit ${result.code ?? result.signal}: ${result.stderr.trim()}`);
  return result.stdout;
}

/** iperf3 and ping from a to b, once both guests answer SSH and cloud-init is done. */
async function measure(ports: Record<Service, number>, user: string, started: number): Promise<Figures> {
  const a = await ssh('a', ports.a, user);
  const b = await ssh('b', ports.b, user);
  try {
    // 2: done but degraded. Either way the guest is quiet, not half-way through its boot.
    for (const client of [a, b]) await sh(client, 'cloud-init status --wait', [0, 2]);
    const bootMs = performance.now() - started;
    await sh(b, 'iperf3 -s -D');
    await sleep(1_000);
    const iperf = JSON.parse(await sh(a, `iperf3 -c b -t ${seconds} -J`)) as {
      end: {
        sum_sent: { bits_per_second: number; retransmits: number };
        sum_received: { bits_per_second: number };
      };
    };
    await sleep(1_000);
    const ping = await sh(a, `ping -q -c ${pings} -i 0.2 b`);
    const counts = /(\d+) packets transmitted, (\d+) received/.exec(ping);
    const rtt = /rtt min\/avg\/max\/mdev = ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(ping);
    if (!counts || !rtt) throw new Error(`ping's summary not found in: ${ping}`);
    return {
      sentBps: iperf.end.sum_sent.bits_per_second,
      receivedBps: iperf.end.sum_received.bits_per_second,
      retransmits: iperf.end.sum_sent.retransmits,
      rtt: { min: Number(rtt[1]), avg: Number(rtt[2]), max: Number(rtt[3]), mdev: Number(rtt[4]) },
      lost: Number(counts[1]) - Number(counts[2]),
      bootMs,
    };
  } finally {
    a.end();
    b.end();
  }
}

/** A QEMU command line of holos's with the private NIC (id net1) in a multicast group instead. */
function withMulticast(argv: string[], group: string): string[] {
  const at = argv.findIndex((arg, i) => argv[i - 1] === '-netdev' && arg.startsWith('stream,id=net1,'));
  if (at < 0) throw new Error(`no -netdev stream,id=net1 in: ${argv.join(' ')}`);
  return argv.with(at, `socket,id=net1,mcast=${group},localaddr=127.0.0.1`);
}

const forwardedSsh = (argv: string[]) => {
  const port = /hostfwd=tcp:127\.0\.0\.1:(\d+)-:22\b/.exec(argv.join(' '))?.[1];
  if (!port) throw new Error(`no SSH hostfwd in: ${argv.join(' ')}`);
  return Number(port);
};

/** Kills this run's QEMUs (those started by hand, and holos's if a step failed), then holos down. */
function cleanUp(): void {
  const kill = (pid: number) => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  };
  for (const pid of oursRunning()) if (cmdlineOf(pid)?.includes('qemu-system')) kill(pid);
  try {
    holos('down');
  } catch (error) {
    console.error(`guest-net: down failed: ${(error as Error).message}`);
  }
  oursRunning().forEach(kill); // what down did not stop
  rmSync(root, { recursive: true, force: true });
}
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.once(signal, () => {
    cleanUp();
    process.exit(130);
  });

const benchStarted = performance.now();
let after: Figures;
let before: Figures;
try {
  // After: what holos runs today, the switch.
  let started = performance.now();
  holos('up', '--wait');
  const config = JSON.parse(holos('config', '--format', 'json')) as {
    services: Record<Service, { cloud_init: { user: string } }>;
  };
  const user = config.services.a.cloud_init.user;
  const ps = JSON.parse(holos('ps', '--format', 'json')) as {
    instances: { service: Service; pid: number; ssh_port: number }[];
  };
  const argvs = {} as Record<Service, string[]>;
  const ports = {} as Record<Service, number>;
  for (const { service, pid, ssh_port } of ps.instances) {
    argvs[service] = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
    ports[service] = ssh_port;
  }
  after = await measure(ports, user, started);

  // Before: the same QEMUs by hand, their private NICs in one multicast group on loopback.
  const pids = ps.instances.map((i) => i.pid);
  holos('stop');
  await untilGone(pids, 60_000);
  const group = `239.${1 + (process.pid % 250)}.${Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}:${40_000 + Math.floor(Math.random() * 20_000)}`;
  started = performance.now();
  for (const service of services) {
    const [qemu, ...args] = withMulticast(argvs[service], group);
    execFileSync(qemu!, args, { stdio: ['ignore', 'ignore', 'inherit'] }); // -daemonize: returns once it runs
  }
  before = await measure({ a: forwardedSsh(argvs.a), b: forwardedSsh(argvs.b) }, user, started);
} finally {
  cleanUp();
}

const mbit = (bps: number) => (bps / 1e6).toFixed(0);
console.log(
  `two guests (1 vCPU, 512 MiB, TCG), a → b over the private segment: iperf3 -t ${seconds}, ping -c ${pings} -i 0.2`,
);
const rows: [string, (f: Figures) => string][] = [
  ['iperf3 receiver (sender), Mbit/s', (f) => `${mbit(f.receivedBps)} (${mbit(f.sentBps)})`],
  ['iperf3 retransmits', (f) => `${f.retransmits}`],
  ['ping avg (mdev), ms', (f) => `${f.rtt.avg.toFixed(2)} (${f.rtt.mdev.toFixed(2)})`],
  ['ping min / max, ms; lost', (f) => `${f.rtt.min.toFixed(2)} / ${f.rtt.max.toFixed(2)}; ${f.lost}`],
  ['boot to measurable', (f) => elapsed(f.bootMs)],
];
const columns = ['switch (after)', 'multicast (before)'];
const width = Math.max(...rows.map(([name]) => name.length));
console.log(`${''.padEnd(width)}  ${columns.map((c) => c.padEnd(20)).join('')}`);
for (const [name, cell] of rows)
  console.log(`${name.padEnd(width)}  ${[after, before].map((f) => cell(f).padEnd(20)).join('')}`);
console.log(`whole bench: ${elapsed(performance.now() - benchStarted)}`);
