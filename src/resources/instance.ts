import { constants } from 'node:fs';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import jsonpatch, { type Operation } from 'fast-json-patch';
import { createHash } from 'node:crypto';
import type {
  ResolvedInstance,
  ResolvedMount,
  ResolvedProject,
  ResolvedService,
} from '../compose/resolve.js';
import type { PortMapping } from '../compose/ports.js';
import type { Device, Healthcheck } from '../compose/schema.js';
import { UserError } from '../errors.js';
import { isOurQemu, readPid } from '../observe/process.js';
import { freePort, isPortFree } from '../observe/ports.js';
import { queryStatus } from '../observe/qmp.js';
import { qemuArgs, type Accelerator } from '../qemu/argv.js';
import { requireUefiFirmware } from '../qemu/firmware.js';
import { launch, stopGracefully, type StopOutcome } from '../qemu/lifecycle.js';
import { readJson, writeAtomically } from '../util/fs.js';
import type { ImageSpec } from './image.js';
import { checkSocketPaths, type InstanceLayout } from './layout.js';
import type { Action, Target } from './types.js';

// The instance: one QEMU process. Its spec is everything from the file that shapes this VM,
// laid out by change class so a diff says what an edit costs (DESIGN.md §3).

export interface InstanceSpec {
  name: string;
  service: string;
  index: number;
  // recreate: a new root disk
  image: { path: string; format: 'qcow2' | 'raw' };
  disk_size: number | null;
  user: string;
  network: { ip: string; mac: string };
  /** The seed's content hash without the hosts table (seed.ts). */
  seed: string;
  // restart: same disk, new QEMU
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

export type ChangeClass = 'none' | 'record' | 'restart' | 'recreate';

const classOfField: Record<keyof InstanceSpec, ChangeClass> = {
  name: 'recreate',
  service: 'recreate',
  index: 'recreate',
  image: 'recreate',
  disk_size: 'recreate',
  user: 'recreate',
  network: 'recreate',
  seed: 'recreate',
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
const classOfSubfield: Record<string, ChangeClass> = { 'image.path': 'restart' };
const classRank: ChangeClass[] = ['none', 'record', 'restart', 'recreate'];

/** What holos wrote when it last started or stopped the instance. */
export interface AppliedRecord {
  schema_version: 1;
  spec: InstanceSpec;
  state: 'running' | 'stopped';
  pid?: number;
  sshPort: number;
  /** Host port of each entry of spec.ports, in order (ephemeral ones as chosen). */
  hostPorts: number[];
  accel: Accelerator;
  hostPublicKey: string;
  startedAt?: string;
}

export interface InstanceObserved {
  pid?: number;
  /** QMP run state of a live QEMU (`running`, `paused`, `shutdown`, …), or `unresponsive`. */
  status?: string;
  applied?: AppliedRecord;
}

/** A state word for people and for ps: the QMP status of a live VM, else what the record says. */
export function stateOf(observed: InstanceObserved): string {
  if (observed.pid !== undefined) return observed.status ?? 'running';
  if (!observed.applied) return 'absent';
  return observed.applied.state === 'running' ? 'exited' : 'stopped';
}

const keyed = <T>(items: readonly T[], key: (item: T) => string): Record<string, T> =>
  Object.fromEntries(items.map((item) => [key(item), item]));

export const portKey = (p: PortMapping) => `${p.hostIp}:${p.host}:${p.guest}/${p.protocol}`;

export function desired(
  service: ResolvedService,
  instance: ResolvedInstance,
  image: ImageSpec,
  seedIdentity: string,
): InstanceSpec {
  const { spec } = service;
  const { disk_size, ...vm } = spec.vm;
  return {
    name: instance.name,
    service: service.name,
    index: instance.index,
    image: { path: image.path, format: image.format },
    disk_size: disk_size ?? null,
    user: service.user,
    network: { ip: instance.ip, mac: instance.mac },
    seed: seedIdentity,
    vm: { ...vm, uefi: service.uefi },
    ports: keyed(instance.ports, portKey),
    mounts: keyed(service.mounts, (m) => m.target),
    devices: keyed(spec.devices, (d) => d.pci),
    stop_grace_period: spec.stop_grace_period,
    healthcheck: spec.healthcheck ?? null,
    depends_on: spec.depends_on,
  };
}

/** JSON only: drops undefined fields so a spec read back from applied.json compares equal. */
export const normalise = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T;

export const specHash = (spec: InstanceSpec) =>
  createHash('sha256')
    .update(JSON.stringify(normalise(spec)))
    .digest('hex')
    .slice(0, 16);

export async function observe(layout: InstanceLayout): Promise<InstanceObserved> {
  const applied = await readJson<AppliedRecord>(layout.applied);
  const pid = await readPid(layout.pidFile);
  if (pid === undefined || !(await isOurQemu(pid, layout.qmpSocket))) return { applied };
  const status = await queryStatus(layout.qmpSocket, 2_000).catch(() => 'unresponsive');
  return { pid, status, applied };
}

export interface Change {
  class: ChangeClass;
  patch: Operation[];
  /** The changed fields as dotted paths: `vm.memory_mb`, `ports`. */
  fields: string[];
}

export function change(applied: InstanceSpec, wanted: InstanceSpec): Change {
  const patch = jsonpatch.compare(normalise(applied), normalise(wanted));
  let worst: ChangeClass = 'none';
  const fields = new Set<string>();
  for (const op of patch) {
    const [top, second] = op.path.split('/').slice(1);
    const cls = classOfSubfield[`${top}.${second}`] ?? classOfField[top as keyof InstanceSpec] ?? 'recreate';
    if (classRank.indexOf(cls) > classRank.indexOf(worst)) worst = cls;
    // Keyed collections and lists are named as a whole: `ports`, `depends_on`, not `depends_on.0`.
    const named = second && !/^\d+$/.test(second) && top !== 'ports' && top !== 'mounts' && top !== 'devices';
    fields.add(named ? `${top}.${second}` : top!);
  }
  return { class: worst, patch, fields: [...fields] };
}

/** Statuses of a live QEMU whose guest is gone: restarting is the repair. */
const deadGuest = new Set(['shutdown', 'guest-panicked', 'internal-error', 'io-error']);

/**
 * The instance's action for this target, if any. `disk` is the overlay's own drift (overlay.ts),
 * which forces a recreate; `goneReason` says why an instance not in the file goes away.
 */
export function diff(
  spec: InstanceSpec,
  observed: InstanceObserved,
  target: Target,
  disk: Action[],
): Action | undefined {
  const act = (verb: Action['verb'], reason: string, patch?: Operation[]): Action => ({
    kind: 'instance',
    name: spec.name,
    instance: spec.name,
    service: spec.service,
    verb,
    reason,
    ...(patch && patch.length > 0 && { patch }),
  });
  const live = observed.pid !== undefined;
  if (target === 'absent') return live || observed.applied ? act('remove', 'down') : undefined;
  if (target === 'stopped') return live ? act('stop', 'stop requested') : undefined;

  const { applied } = observed;
  // A disk that moved with its base is rebased, not replaced: the VM only restarts on it.
  const newDisk = disk.find((a) => a.verb !== 'rebase');
  const rebase = disk.find((a) => a.verb === 'rebase');
  if (!applied) {
    if (newDisk?.verb === 'create') return act('create', 'new instance');
    if (newDisk) return act('recreate', newDisk.reason);
    return act(live ? 'restart' : 'start', rebase?.reason ?? 'no record of its last start');
  }
  const { class: cls, patch, fields } = change(applied.spec, spec);
  const changed = `${fields.join(', ')} changed`;
  if (newDisk) return act('recreate', newDisk.reason, patch);
  if (cls === 'recreate') return act('recreate', changed, patch);
  if (!live) return act('start', applied.state === 'running' ? 'QEMU exited' : 'stopped', patch);
  if (cls === 'restart' || rebase) return act('restart', cls === 'restart' ? changed : rebase!.reason, patch);
  if (deadGuest.has(observed.status ?? ''))
    return act('restart', `guest status is ${observed.status}`, patch);
  if (observed.status === 'paused') return act('resume', 'paused', patch);
  if (cls === 'record') return act('record', `${changed} (no VM action)`, patch);
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Executors

export interface StartInput {
  project: ResolvedProject;
  instance: ResolvedInstance;
  spec: InstanceSpec;
  layout: InstanceLayout;
  seedPath: string;
  volumeFiles: Record<string, string>;
  accel: Accelerator;
  qemu: string;
  hostPublicKey: string;
  previous?: AppliedRecord;
}

/** A host port: the fixed one if free, else a clear error; an ephemeral one reused when possible. */
async function hostPort(instance: string, port: PortMapping, previous: number | undefined): Promise<number> {
  if (port.host !== 0) {
    if (await isPortFree(port.host, port.hostIp, port.protocol)) return port.host;
    throw new UserError(
      `${instance}: host port ${port.hostIp}:${port.host}/${port.protocol} is in use; free it or change ports: in the file`,
    );
  }
  if (previous && (await isPortFree(previous, port.hostIp, port.protocol))) return previous;
  return freePort(port.hostIp);
}

export async function start(input: StartInput): Promise<AppliedRecord> {
  const { layout, instance, previous } = input;
  checkSocketPaths(layout);
  await mkdir(layout.dir, { recursive: true, mode: 0o700 });
  const sshPort = previous && (await isPortFree(previous.sshPort)) ? previous.sshPort : await freePort();
  const hostPorts: number[] = [];
  for (const [i, port] of instance.ports.entries())
    hostPorts.push(await hostPort(instance.name, port, previous?.hostPorts[i]));
  let uefiCode: string | undefined;
  if (input.spec.vm.uefi) {
    const firmware = requireUefiFirmware();
    uefiCode = firmware.code;
    // The variable store is the instance's own (boot entries live there): copied once, then kept.
    await copyFile(firmware.vars, layout.uefiVars, constants.COPYFILE_EXCL).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    });
  }
  const args = qemuArgs(input.project, instance, {
    accel: input.accel,
    files: { ...layout, seed: input.seedPath },
    sshPort,
    hostPorts,
    volumeFiles: input.volumeFiles,
    uefiCode,
  });
  await rm(layout.pidFile, { force: true });
  const pid = await launch(instance.name, input.qemu, args, layout.pidFile, layout.qmpSocket);
  const record: AppliedRecord = {
    schema_version: 1,
    spec: normalise(input.spec),
    state: 'running',
    pid,
    sshPort,
    hostPorts,
    accel: input.accel,
    hostPublicKey: input.hostPublicKey,
    startedAt: new Date().toISOString(),
  };
  await writeRecord(layout, record);
  return record;
}

export const writeRecord = (layout: InstanceLayout, record: AppliedRecord) =>
  writeAtomically(layout.applied, `${JSON.stringify(record, null, 2)}\n`);

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
  if (observed.applied) await writeRecord(layout, { ...observed.applied, state: 'stopped', pid: undefined });
  return outcome;
}

/** Removes the instance's directory: its root disk, seed, sockets and logs. Named volumes live elsewhere. */
export async function remove(layout: InstanceLayout): Promise<void> {
  await rm(layout.dir, { recursive: true, force: true });
}
