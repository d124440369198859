import { mkdir, rm, stat } from 'node:fs/promises';
import jsonpatch, { type Operation } from 'fast-json-patch';
import type {
  Nic,
  ResolvedInstance,
  ResolvedMount,
  ResolvedProject,
  ResolvedService,
} from '../compose/resolve.js';
import type { PortMapping } from '../compose/ports.js';
import { dependencyNames, type Device, type Healthcheck } from '../compose/schema.js';
import { UserError } from '../errors.js';
import { QmpClient } from '../observe/qmp.js';
import { freePort, isPortFree } from '../observe/ports.js';
import { qemuArgs } from '../qemu/argv.js';
import { requireUefiFirmware } from '../qemu/firmware.js';
import { checkBridge } from '../qemu/bridge.js';
import { launch, stopGracefully, type StopOutcome } from '../qemu/lifecycle.js';
import {
  firstBootNow,
  inspect,
  instancesOnDisk,
  parseInstanceName,
  type BootState,
  type RunState,
} from '../state/inspect.js';
import { checkSocketPaths, type InstanceLayout } from '../state/layout.js';
import { sshTargetOf, writeApplied, type AppliedRecord, type FirstBoot } from '../state/records.js';
import { serviceImage } from './image.js';
import { hostKeyName, projectKeySpec, read as readKeypair } from './keypair.js';
import { startsVm, type Action, type Change, type ExecContext, type ExecInput, type Kind } from './kind.js';
import { drift, sizeChange } from './overlay.js';
import { formatSize } from '../compose/units.js';
import { hostsDigest, seedFileOf, seedIdentity, write as writeSeed } from './seed.js';
import { hostsSync } from '../cloudinit/render.js';
import { shellQuote } from '../util/shell.js';

export type { AppliedRecord } from '../state/records.js';

// The instance: one QEMU process. Its spec is everything from the file that shapes this VM,
// laid out by change class so a diff says what an edit costs (DESIGN.md §3). It is the single
// source of the QEMU command line (qemu/argv.ts reads nothing else), of the applied record and
// of the diff, so a field that shapes the VM cannot escape the diff.

export interface InstanceSpec {
  name: string;
  service: string;
  index: number;
  // recreate: a new root disk
  image: { path: string; format: 'qcow2' | 'raw' };
  disk_size: number | null;
  user: string;
  /** The seed's identity: a hash of its inputs without the hosts table and mounts (seed.ts). */
  seed: string;
  // restart: same disk, new QEMU
  /**
   * A NIC per network, by network name, in the service's order. Its address and MAC are the
   * seed's (a change of them changes `seed`, so the disk is new); what it is plugged into is
   * QEMU's (restart).
   */
  networks: Record<string, NicSpec>;
  /** NIC 1's MAC (user-mode, the forwards); the seed's too. */
  uplink_mac: string;
  vm: {
    vcpu: number;
    memory_mb: number;
    machine: string;
    cpu_model: string;
    uefi: boolean;
    extra_args: string[];
  };
  ports: Record<string, PortMapping>;
  mounts: Record<string, ResolvedMount>;
  devices: Record<string, Device>;
  // record only
  stop_grace_period: number;
  healthcheck: Healthcheck | null;
  depends_on: string[];
}

export interface NicSpec {
  /**
   * switch: the project's segment of that network (resources/segment.ts); bridge: a host
   * bridge; multicast: only in records of holos before the switch, restarted onto it.
   */
  driver: 'switch' | 'bridge' | 'multicast';
  mac: string;
  /** A switch network's static address and the subnet's prefix (a bridge's is the LAN's DHCP). */
  ip?: string;
  prefix?: number;
  /** The host bridge of a bridge network. */
  bridge?: string;
}

export type ChangeClass = 'none' | 'record' | 'restart' | 'recreate';

export const classOfField: Record<keyof InstanceSpec, ChangeClass> = {
  name: 'recreate',
  service: 'recreate',
  index: 'recreate',
  image: 'recreate',
  // The overlay judges it: a bigger disk is resized during a restart (overlay.ts: sizeChange).
  disk_size: 'record',
  user: 'recreate',
  seed: 'recreate',
  networks: 'restart',
  uplink_mac: 'restart',
  vm: 'restart',
  ports: 'restart',
  mounts: 'restart',
  devices: 'restart',
  stop_grace_period: 'record',
  healthcheck: 'record',
  depends_on: 'record',
};
/**
 * Fields whose class differs from their parent's. The base image's path: the overlay judges
 * whether a new path is the same file (rebased, overlay.ts) or another image (a new disk); the
 * instance restarts either way, because QEMU holds the disk open.
 */
export const classOfSubfield: Record<string, ChangeClass> = {
  'image.path': 'restart',
};
const classRank: ChangeClass[] = ['none', 'record', 'restart', 'recreate'];

/** The class of a spec path (`vm.memory_mb`, `image.path`). */
export const classOfPath = (path: string): ChangeClass => {
  const [top, second] = path.split('.');
  return classOfSubfield[`${top}.${second}`] ?? classOfField[top as keyof InstanceSpec] ?? 'recreate';
};

export interface InstanceObserved {
  pid?: number;
  /** QMP run state of a live QEMU (`running`, `paused`, `shutdown`, …), or `unresponsive`. */
  status?: RunState;
  applied?: AppliedRecord;
  /** Whether its first boot finished, read once its QEMU is gone or its guest dead. */
  boot?: BootState;
}

const keyed = <T>(items: readonly T[], key: (item: T) => string): Record<string, T> =>
  Object.fromEntries(items.map((item) => [key(item), item]));

export const portKey = (p: PortMapping) => `${p.hostIp}:${p.host}:${p.guest}/${p.protocol}`;

/** The spec of one instance, from the resolved project. Pure. */
export function instanceSpec(
  project: ResolvedProject,
  service: ResolvedService,
  instance: ResolvedInstance,
  base: { path: string; format: 'qcow2' | 'raw' },
): InstanceSpec {
  const { spec } = service;
  const { disk_size, ...vm } = spec.vm;
  const { path, format } = base;
  return {
    name: instance.name,
    service: service.name,
    index: instance.index,
    image: { path, format },
    disk_size: disk_size ?? null,
    user: service.user,
    seed: seedIdentity(service, instance),
    networks: Object.fromEntries(instance.nics.map((nic) => [nic.network, nicSpec(project, nic)])),
    uplink_mac: instance.userMac,
    vm: { ...vm, uefi: service.uefi },
    ports: keyed(instance.ports, portKey),
    mounts: keyed(service.mounts, (m) => m.target),
    devices: keyed(spec.devices, (d) => d.pci),
    stop_grace_period: spec.stop_grace_period,
    healthcheck: spec.healthcheck ?? null,
    depends_on: dependencyNames(spec),
  };
}

function nicSpec(project: ResolvedProject, { network, mac, ip, prefix }: Nic): NicSpec {
  const { driver, bridge } = project.networks.find((n) => n.name === network)!;
  return { driver, mac, ...(ip !== undefined && { ip, prefix }), ...(bridge !== undefined && { bridge }) };
}

/** JSON only: drops undefined fields so a spec read back from applied.json compares equal. */
export const normalise = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

/** The instance's process and record (state/inspect.ts), with QEMU asked for its run state. */
export async function observe(layout: InstanceLayout, name = ''): Promise<InstanceObserved> {
  const { pid, status, applied, boot } = await inspect(name, layout, { qmp: true, boot: 'first' });
  return {
    ...(pid !== undefined && { pid, status }),
    ...(applied && { applied }),
    ...(boot && { boot }),
  };
}

export interface SpecChange {
  class: ChangeClass;
  patch: Operation[];
  /** The changed fields as dotted paths: `vm.memory_mb`, `ports`. */
  fields: string[];
}

/**
 * How `wanted` differs from what the instance was started with. A record of holos 0.1
 * (schema 1) lacks fields added since and hashed its seed otherwise: those are taken as they
 * are wanted, so an upgrade alone never restarts or recreates a VM.
 */
export function change(record: AppliedRecord | InstanceSpec, wanted: InstanceSpec): SpecChange {
  const applied = 'spec' in record ? legacyAware(record) : record;
  const patch = jsonpatch.compare(normalise(applied), normalise(wanted));
  let worst: ChangeClass = 'none';
  const fields = new Set<string>();
  for (const op of patch) {
    const [top, second] = op.path.split('/').slice(1);
    const cls = classOfPath(`${top}.${second}`);
    if (classRank.indexOf(cls) > classRank.indexOf(worst)) worst = cls;
    // Keyed collections and lists are named as a whole: `ports`, `depends_on`, not `depends_on.0`.
    const named = second && !/^\d+$/.test(second) && top !== 'ports' && top !== 'mounts' && top !== 'devices';
    fields.add(named ? `${top}.${second}` : top!);
  }
  return { class: worst, patch, fields: [...fields] };

  function legacyAware(r: AppliedRecord): InstanceSpec {
    if (r.schema_version !== 1) return r.spec;
    return { ...r.spec, seed: wanted.seed };
  }
}

const movedToSwitch =
  "its private NIC moves from a multicast group other local users could join to the project's own switch";

/** Statuses of a live QEMU whose guest is gone: restarting is the repair. */
const deadGuest = new Set(['shutdown', 'guest-panicked', 'internal-error', 'io-error']);

function strayReason(name: string, observed: InstanceObserved, project: ResolvedProject): string {
  const service = observed.applied?.spec.service ?? parseInstanceName(name).service;
  const kept = project.services.find((s) => s.name === service);
  return kept
    ? `replicas of ${service} are now ${kept.spec.replicas}`
    : `service ${service} is no longer in the file`;
}

export const instance: Kind<'instance', InstanceSpec, InstanceObserved> = {
  kind: 'instance',

  desired(input) {
    const services = new Map(input.project.services.map((s) => [s.name, s]));
    return new Map(
      input.project.instances.map((i) => {
        const service = services.get(i.service)!;
        return [i.name, instanceSpec(input.project, service, i, serviceImage(input, service))];
      }),
    );
  },

  onHost: instancesOnDisk,

  observe: (name, _spec, layout) => observe(layout.instance(name), name),

  diff(name, spec, observed, ctx) {
    const live = observed.pid !== undefined;
    const act = (
      verb: Action['verb'],
      cause: Change['cause'],
      reason: string,
      extra: Partial<Change> = {},
    ): Change[] => [
      {
        kind: 'instance',
        name,
        instance: name,
        service: spec?.service ?? observed.applied?.spec.service ?? parseInstanceName(name).service,
        verb,
        cause,
        reason,
        ...(extra.forced_by && { forced_by: extra.forced_by }),
        ...(extra.patch && extra.patch.length > 0 && { patch: extra.patch }),
        ...(startsVm.has(verb) && spec && { needs: needsOf(spec, ctx.project.name) }),
      },
    ];

    if (!spec) {
      // On the host, not in the file: a removed service, or a replica beyond `replicas`.
      if (ctx.strays === 'absent')
        return act('remove', 'not-in-file', strayReason(name, observed, ctx.project));
      if (ctx.strays === 'stopped' && live) return act('stop', 'requested', 'stop requested');
      return [];
    }
    const target = ctx.targetOf(spec.service, name);
    if (!target) return [];
    if (target === 'absent') {
      // An up that failed before QEMU started still left the directory (key, disk, seed).
      const leftBehind =
        ctx.observed('overlay', name)?.exists ||
        ctx.observed('seed', name)?.exists ||
        ctx.observed('keypair', hostKeyName(name))?.publicKey;
      return live || observed.applied || leftBehind ? act('remove', 'requested', 'down') : [];
    }
    if (target === 'stopped') return live ? act('stop', 'requested', 'stop requested') : [];

    const disk = drift(ctx.spec('overlay', name)!, ctx.observed('overlay', name) ?? { exists: false });
    const newDisk = disk?.verb === 'rebase' ? undefined : disk;
    const rebase = disk?.verb === 'rebase' ? disk : undefined;
    const { applied } = observed;
    if (!applied) {
      if (newDisk?.verb === 'create') return act('create', 'missing', 'new instance');
      if (newDisk) return act('recreate', 'drift', newDisk.reason);
      return act(live ? 'restart' : 'start', 'drift', rebase?.reason ?? 'no record of its last start');
    }
    const { class: cls, patch, fields } = change(applied, spec);
    const changed = { patch, forced_by: fields };
    const because = `${fields.join(', ')} changed`;
    if (newDisk) return act('recreate', 'drift', newDisk.reason, { patch });
    const hostKey = ctx.observed('keypair', hostKeyName(name))?.publicKey;
    const projectKey = ctx.observed('keypair', ctx.project.name)?.publicKey;
    if (
      hostKey !== applied.hostPublicKey ||
      (applied.projectPublicKey && projectKey !== applied.projectPublicKey)
    )
      return act(
        'recreate',
        'key-changed',
        'a key the guest was given is gone or replaced; it gets new ones',
        {
          patch,
        },
      );
    if (cls === 'recreate') return act('recreate', 'changed', because, changed);
    const size = sizeChange(ctx.spec('overlay', name)!, ctx.observed('overlay', name) ?? { exists: false });
    if (size === 'shrink')
      throw new UserError(
        `${name}: vm.disk_size ${formatSize(spec.disk_size!)} is smaller than its root disk (${formatSize(ctx.observed('overlay', name)!.virtualSize!)}); a disk never shrinks (it would lose data): set ${formatSize(ctx.observed('overlay', name)!.virtualSize!)} or more`,
      );
    const grow =
      size === 'grow' ? 'vm.disk_size grows: the root disk is resized while the VM is down' : undefined;
    // Killed or stopped while cloud-init was writing its state: booted again, that disk can come
    // up without a user or sshd. Nothing of the user's is on a disk whose first boot never ended.
    if ((!live || deadGuest.has(observed.status ?? '')) && observed.boot?.interrupted)
      return act('recreate', 'interrupted', 'its first boot never finished', { patch });
    if (!live)
      return applied.state === 'running'
        ? act('start', 'drift', 'QEMU exited', { patch })
        : act('start', 'requested', 'stopped', { patch });
    if (cls === 'restart')
      return fields.every((f) => f.startsWith('networks')) &&
        Object.values(applied.spec.networks).some((nic) => nic.driver === 'multicast')
        ? act('restart', 'upgraded', movedToSwitch, changed)
        : act('restart', 'changed', because, changed);
    if (rebase) return act('restart', 'moved', rebase.reason, { patch });
    if (grow) return act('restart', 'changed', grow, changed);
    if (deadGuest.has(observed.status ?? ''))
      return act('restart', 'drift', `guest status is ${observed.status}`, { patch });
    if (observed.status === 'paused') return act('resume', 'drift', 'paused', { patch });
    if (cls === 'record') return act('record', 'changed', `${because} (no VM action)`, changed);
    if (observed.status === 'running' && applied.hosts !== hostsDigest(resolvedOf(ctx.project, name).hosts))
      return act(
        'update',
        'hosts-changed',
        'the hosts table changed: /etc/hosts is rewritten over SSH (no restart)',
      );
    if (applied.schema_version === 1)
      return act('record', 'upgraded', 'recorded by holos 0.1; the record is rewritten (no VM action)');
    return [];
  },

  execute: {
    create: startExecutor,
    recreate: startExecutor,
    start: startExecutor,
    restart: startExecutor,
    resume: async ({ action }, ctx) => {
      const qmp = await QmpClient.connect(ctx.layout.instance(action.name).qmpSocket, { timeoutMs: 5_000 });
      try {
        await qmp.execute('cont');
      } finally {
        qmp.close();
      }
    },
    stop: async ({ action, spec, observed }, ctx) => {
      await stop(ctx.layout.instance(action.name), observed, graceOf(spec, observed), ctx.step);
    },
    remove: async ({ action, spec, observed }, ctx) => {
      const layout = ctx.layout.instance(action.name);
      if (observed.pid !== undefined) await stop(layout, observed, graceOf(spec, observed), ctx.step);
      await remove(layout);
    },
    update: async ({ action, observed }, ctx) => {
      await pushHosts(ctx, action.name, observed.applied!);
    },
    record: async ({ action, spec, observed }, ctx) => {
      await writeRecord(ctx.layout.instance(action.name), {
        ...observed.applied!,
        schema_version: 2,
        spec: normalise(spec!),
      });
    },
  },
};

const resolvedOf = (project: ResolvedProject, name: string) =>
  project.instances.find((i) => i.name === name)!;

/** Rewrites /etc/hosts in a running guest over SSH, once sshd answers, and records the table it has. */
async function pushHosts(ctx: ExecContext, name: string, applied: AppliedRecord): Promise<void> {
  const resolved = resolvedOf(ctx.project, name);
  await asRootInGuest(ctx, applied, hostsSync(resolved), 'rewrite /etc/hosts');
  await writeRecord(ctx.layout.instance(name), { ...applied, hosts: hostsDigest(resolved.hosts) });
}

/**
 * Runs a shell line as root in a running guest over SSH, once its sshd answers (up to 3
 * minutes: it may still be booting); `what` says what it is for, in the wait and the error.
 */
export async function asRootInGuest(
  ctx: ExecContext,
  applied: AppliedRecord,
  script: string,
  what: string,
): Promise<void> {
  const key = await readKeypair(projectKeySpec(ctx.layout));
  if (!key) throw new Error('its project key is missing');
  // ssh2 loads only for this: a plan without a step in a guest never needs it.
  const [{ connectWhenReady }, { execCollect }] = await Promise.all([
    import('../ssh/session.js'),
    import('../ssh/exec.js'),
  ]);
  const client = await connectWhenReady(sshTargetOf(applied, key.privateKey), {
    waitMs: 180_000,
    onWait: () => ctx.step(`waiting for sshd to ${what}`),
  });
  try {
    const result = await execCollect(client, `sudo sh -c ${shellQuote(script)}`, 60_000);
    if (result.code !== 0) throw new Error(`${what} failed (exit ${result.code}): ${result.stderr.trim()}`);
  } finally {
    client.end();
  }
}

/** What a VM needs before it starts: its keys, its networks' switches, base image, volumes, disk and seed. */
function needsOf(spec: InstanceSpec, project: string): string[] {
  const volumes = Object.values(spec.mounts).flatMap((m) =>
    m.type === 'volume' ? [`volume:${m.source}`] : [],
  );
  return [
    `keypair:${project}`,
    `keypair:${hostKeyName(spec.name)}`,
    ...Object.entries(spec.networks).flatMap(([network, nic]) =>
      nic.driver === 'switch' ? [`segment:${network}`] : [],
    ),
    ...volumes,
    `overlay:${spec.name}`,
    `seed:${spec.name}`,
  ];
}

const graceOf = (spec: InstanceSpec | undefined, observed: InstanceObserved) =>
  spec?.stop_grace_period ?? observed.applied?.spec.stop_grace_period ?? 30_000;

// ---------------------------------------------------------------------------------------------
// Executors

/**
 * create, recreate, start, restart: the old QEMU (if any) stops; the instance's parts planned
 * `during` this action (a new disk, a rebase, a seed) are made while it is down; the new one starts.
 */
async function startExecutor(
  { action, spec, observed }: ExecInput<InstanceSpec, InstanceObserved>,
  ctx: ExecContext,
): Promise<void> {
  const layout = ctx.layout.instance(action.name);
  if (observed.pid !== undefined) await stop(layout, observed, graceOf(spec, observed), ctx.step);
  await ctx.between();
  const hostKey = await readKeypair({ dir: layout.hostKey });
  if (!hostKey) throw new Error('its host key is missing');
  const projectKey = await readKeypair(projectKeySpec(ctx.layout));
  // A seed deleted since the plan is written again: QEMU needs it to start.
  const seedFile = (await seedFileOf(layout)) ?? (await writeSeed(ctx.spec('seed', action.name)!));
  const accel = await ctx.accel();
  await ctx.startSlot(() =>
    start({
      spec: spec!,
      layout,
      seedPath: seedFile,
      volumeFiles: Object.fromEntries(
        Object.values(spec!.mounts).flatMap((m) =>
          m.type === 'volume' ? [[m.source, ctx.layout.volume(m.source)]] : [],
        ),
      ),
      accel,
      qemu: ctx.qemu.system,
      hostPublicKey: hostKey.publicKey,
      projectPublicKey: projectKey?.publicKey,
      previous: observed.applied,
      hosts: hostsDigest(resolvedOf(ctx.project, action.name).hosts),
      newDisk: action.verb === 'create' || action.verb === 'recreate',
    }),
  );
}

export interface StartInput {
  spec: InstanceSpec;
  layout: InstanceLayout;
  seedPath: string;
  volumeFiles: Record<string, string>;
  accel: AppliedRecord['accel'];
  qemu: string;
  hostPublicKey: string;
  projectPublicKey?: string;
  previous?: AppliedRecord;
  /** The root disk was made for this start: its first boot begins (else the record's is carried). */
  newDisk?: boolean;
  /** The hosts table the guest boots with (its seed's). */
  hosts?: string;
  /** Picks a free port for holos's own forwards (default freePort; a test gives a taken one). */
  pickPort?: (host?: string) => Promise<number>;
}

/** A host port: the fixed one if free, else a clear error; an ephemeral one reused when possible. */
async function hostPort(
  port: PortMapping,
  previous: number | undefined,
  pick: (host?: string) => Promise<number>,
): Promise<number> {
  if (port.host !== 0) {
    if (await isPortFree(port.host, port.hostIp, port.protocol)) return port.host;
    throw new UserError(
      `host port ${port.hostIp}:${port.host}/${port.protocol} is in use; free it or change ports: in the file`,
    );
  }
  return reusedOrPicked(previous, pick, port.hostIp, port.protocol);
}

/** The port of the last start while it is free (a client's forward stays where it was), else a new one. */
async function reusedOrPicked(
  previous: number | undefined,
  pick: (host?: string) => Promise<number>,
  host = '127.0.0.1',
  protocol: PortMapping['protocol'] = 'tcp',
): Promise<number> {
  if (previous && (await isPortFree(previous, host, protocol))) return previous;
  return pick(host);
}

/** The host ports of one start, and which of them holos picked (and may pick again). */
async function choosePorts(
  spec: InstanceSpec,
  previous: AppliedRecord | undefined,
  pick: (host?: string) => Promise<number>,
) {
  const sshPort = await reusedOrPicked(previous?.sshPort, pick);
  const picked = new Set([sshPort]);
  const hostPorts: number[] = [];
  for (const [i, port] of Object.values(spec.ports).entries()) {
    hostPorts.push(await hostPort(port, previous?.hostPorts[i], pick));
    if (port.host === 0) picked.add(hostPorts[i]!);
  }
  return { sshPort, hostPorts, picked };
}

/**
 * What QEMU says when a forward's host port is taken. A port free when probed can be bound by
 * another process before QEMU binds it, and the kernel hands a just-probed port out again: with
 * many VMs starting at once, one probe's socket can hold the port another VM's QEMU is binding.
 */
const forwardTaken = /Could not set up host forwarding rule '(?:tcp|udp):[^:']*:(\d+)-/;
const startAttempts = 3;

export async function start(input: StartInput): Promise<AppliedRecord> {
  const { layout, spec, previous } = input;
  const nics = Object.entries(spec.networks);
  checkSocketPaths(
    layout,
    nics.flatMap(([network, nic]) => (nic.driver === 'bridge' ? [] : [network])),
  );
  for (const [network, nic] of nics)
    if (nic.driver === 'bridge') await checkBridge(network, nic.bridge ?? '');
  await mkdir(layout.dir, { recursive: true, mode: 0o700 });
  const pick = input.pickPort ?? freePort;
  // The variable store is the instance's own part (nvram.ts); the code is OVMF's, read-only.
  const uefiCode = spec.vm.uefi ? requireUefiFirmware().code : undefined;
  for (let attempt = 1; ; attempt++) {
    // A retry picks every port afresh: the previous ones are what failed.
    const { sshPort, hostPorts, picked } = await choosePorts(
      spec,
      attempt === 1 ? previous : undefined,
      pick,
    );
    const args = qemuArgs(spec, {
      accel: input.accel,
      files: { ...layout, seed: input.seedPath },
      sshPort,
      hostPorts,
      volumeFiles: input.volumeFiles,
      uefiCode,
    });
    await rm(layout.pidFile, { force: true });
    // Where this boot's console lines begin in the log QEMU appends to (observe/boot.ts).
    const bootOffset = (await stat(layout.serialLog).catch(() => undefined))?.size ?? 0;
    let pid: number;
    try {
      pid = await launch(input.qemu, args, layout.pidFile, layout.qmpSocket);
    } catch (error) {
      const taken = forwardTaken.exec((error as Error).message)?.[1];
      if (taken !== undefined && picked.has(Number(taken)) && attempt < startAttempts) continue;
      throw error;
    }
    return recordStart(input, { pid, sshPort, hostPorts, bootOffset });
  }
}

async function recordStart(
  input: StartInput,
  started: { pid: number; sshPort: number; hostPorts: number[]; bootOffset: number },
): Promise<AppliedRecord> {
  const { layout, spec } = input;
  const { pid, sshPort, hostPorts, bootOffset } = started;
  // A disk that never ran (no record, an empty serial log: its first start failed, say, on a
  // taken port) is still before its first boot.
  const firstBoot: FirstBoot | undefined =
    input.newDisk || (!input.previous && bootOffset === 0)
      ? { state: 'pending', serial_offset: bootOffset }
      : await firstBootNow(layout, input.previous);
  const record: AppliedRecord = {
    schema_version: 2,
    spec: normalise(spec),
    state: 'running',
    pid,
    sshPort,
    hostPorts,
    accel: input.accel,
    hostPublicKey: input.hostPublicKey,
    ...(input.projectPublicKey && { projectPublicKey: input.projectPublicKey }),
    startedAt: new Date().toISOString(),
    ...(firstBoot && { first_boot: firstBoot }),
    boot_offset: bootOffset,
    ...(input.hosts && { hosts: input.hosts }),
  };
  await writeRecord(layout, record);
  return record;
}

export const writeRecord = writeApplied;

/** Stops QEMU gracefully (lifecycle.ts) and records the instance as stopped. */
export async function stop(
  layout: InstanceLayout,
  observed: InstanceObserved,
  graceMs: number,
  step: (message: string) => void,
): Promise<StopOutcome> {
  const outcome =
    observed.pid === undefined
      ? 'not-running'
      : await stopGracefully({
          pid: observed.pid,
          marker: layout.qmpSocket,
          qmpSocket: layout.qmpSocket,
          graceMs,
          step,
        });
  const { applied } = observed;
  if (applied) {
    const firstBoot = await firstBootNow(layout, applied);
    await writeRecord(layout, {
      ...applied,
      state: 'stopped',
      pid: undefined,
      ...(firstBoot && { first_boot: firstBoot }),
    });
  }
  return outcome;
}

/** Removes the instance's directory: its root disk, seed, sockets and logs. Named volumes live elsewhere. */
export async function remove(layout: InstanceLayout): Promise<void> {
  await rm(layout.dir, { recursive: true, force: true });
}
