import { readdir } from 'node:fs/promises';
import { isOurQemu, readPid } from '../observe/process.js';
import { queryStatus } from '../observe/qmp.js';
import { join } from 'node:path';
import { readQcow2Header, type Qcow2Header } from '../observe/qcow2.js';
import { projectLayout, type InstanceLayout, type ProjectLayout } from './layout.js';
import { readApplied, type AppliedRecord, type FirstBoot } from './records.js';
import { scanSerialLog, type BootScan, type CloudInitVerdict } from '../observe/boot.js';

// What is on the host now for an instance: the one reader of an instance directory (after
// lima's store.Inspect). The reconciler's observe, watch, ps, exec/console/logs and down all
// ask here, so "is it running, and with what" has one answer.

/** The run states QEMU reports over QMP (qapi RunState). */
export const qmpRunStates = [
  'debug',
  'inmigrate',
  'internal-error',
  'io-error',
  'paused',
  'postmigrate',
  'prelaunch',
  'finish-migrate',
  'restore-vm',
  'running',
  'save-vm',
  'shutdown',
  'suspended',
  'watchdog',
  'guest-panicked',
  'colo',
] as const;
export type QmpRunState = (typeof qmpRunStates)[number];

/**
 * An instance's state, closed: a live QEMU's QMP run state (or `unresponsive` when QMP does not
 * answer); without a process, `exited` (holos started it and did not stop it), `stopped`, or
 * `absent` (nothing was ever started).
 */
export type RunState = QmpRunState | 'unresponsive' | 'exited' | 'stopped' | 'absent';

export interface InstanceState {
  name: string;
  service: string;
  index: number;
  layout: InstanceLayout;
  /** Set while its QEMU runs (the pid file names a live process whose command line is ours). */
  pid?: number;
  /** The QMP run state of a live QEMU, when asked for (`qmp: true`). */
  status?: RunState;
  applied?: AppliedRecord;
  state: RunState;
  /** What the serial log says of its boots, when asked for (`boot`) and there is a record. */
  boot?: BootState;
}

/** An instance's boots as the serial log tells them (observe/boot.ts). */
export interface BootState {
  firstBoot: 'pending' | 'done';
  verdict?: CloudInitVerdict;
  /** Its first boot began (cloud-init ran) and never finished: the disk's cloud-init state may be half-written. */
  interrupted: boolean;
  /** The current boot: cloud-init is at work, and whether it finished (read only for a live QEMU). */
  thisBoot: BootScan['thisBoot'];
}

/**
 * Where an instance is on its way to ready: the phases of a live guest (DESIGN.md §4), else its
 * run state (`stopped`, `exited`, `paused`, …). `created`: made, never started.
 */
export type Phase = 'created' | 'booting' | 'provisioning' | 'ready' | 'degraded' | 'failed' | RunState;

/** The service and replica index an instance name stands for (`web-1` → web, 1), without a record. */
export function parseInstanceName(name: string): { service: string; index: number } {
  const match = /^(.*)-(\d+)$/.exec(name);
  return match ? { service: match[1]!, index: Number(match[2]) } : { service: name, index: 0 };
}

const asRunState = (status: string): RunState =>
  (qmpRunStates as readonly string[]).includes(status) ? (status as QmpRunState) : 'unresponsive';

/**
 * The instance in `layout`. With `qmp`, a live QEMU is asked for its run state (a round trip
 * per instance); without, a live QEMU counts as `running` (cheap: files and /proc only).
 */
export async function inspect(
  name: string,
  layout: InstanceLayout,
  options: InspectOptions = {},
): Promise<InstanceState> {
  const applied = await readApplied(layout);
  const pid = await readPid(layout.pidFile);
  const live = pid !== undefined && (await isOurQemu(pid, layout.qmpSocket));
  const status =
    live && options.qmp
      ? await queryStatus(layout.qmpSocket, 2_000).then(asRunState, () => 'unresponsive' as const)
      : undefined;
  const booting = live && (status === undefined || status === 'running');
  // Whether a first boot finished matters once its QEMU is gone (a plan's repair); its
  // progress, to a reader of phases.
  const boot =
    applied && (options.boot === 'phase' || (options.boot === 'first' && !booting))
      ? await readBoot(layout, applied, options.boot === 'phase' && booting)
      : undefined;
  return stateOf(name, layout, {
    applied,
    ...(live && { pid }),
    ...(status !== undefined && { status }),
    ...(boot && { boot }),
  });
}

export interface InspectOptions {
  /** Ask a live QEMU for its run state (a round trip per instance). */
  qmp?: boolean;
  /**
   * Read the serial log: `first` for whether the disk's first boot finished (read only while the
   * record says it is pending), `phase` for the current boot's progress too.
   */
  boot?: 'first' | 'phase';
}

/** The boots of an instance with a record; `current`: the current boot's progress is wanted. */
export async function readBoot(
  layout: InstanceLayout,
  applied: AppliedRecord,
  current: boolean,
): Promise<BootState> {
  const recorded = applied.first_boot;
  const none = { cloudInit: false, finished: false };
  // A record from before first boots were tracked: its disk counts as booted, its boot as over.
  if (!recorded)
    return { firstBoot: 'done', interrupted: false, thisBoot: { cloudInit: true, finished: true } };
  const pending = recorded.state === 'pending';
  if (!pending && !current)
    return {
      firstBoot: 'done',
      interrupted: false,
      thisBoot: none,
      ...(recorded.verdict && { verdict: recorded.verdict }),
    };
  const boot = applied.boot_offset ?? recorded.serial_offset;
  const scan = await scanSerialLog(
    layout.serialLog,
    pending ? recorded.serial_offset : boot,
    boot,
    (s) => (!pending || s.firstBoot !== undefined) && (!current || s.thisBoot.finished),
  );
  const verdict = scan.firstBoot ?? recorded.verdict;
  return {
    firstBoot: verdict || !pending ? 'done' : 'pending',
    ...(verdict && { verdict }),
    interrupted: pending && !scan.firstBoot && scan.cloudInitRan && !scan.cloudInitFinished,
    thisBoot: current ? scan.thisBoot : none,
  };
}

/**
 * The record's first boot brought up to date with the serial log: a pending one that has since
 * finished is done, with cloud-init's verdict when holos's line came. For a record about to be
 * rewritten (a start, a stop), so a later boot never waits for the first boot's line again.
 */
export async function firstBootNow(
  layout: InstanceLayout,
  applied: AppliedRecord | undefined,
): Promise<FirstBoot | undefined> {
  const recorded = applied?.first_boot;
  if (recorded?.state !== 'pending') return recorded;
  const { firstBoot, cloudInitFinished } = await scanSerialLog(
    layout.serialLog,
    recorded.serial_offset,
    Number.MAX_SAFE_INTEGER,
    (s) => s.firstBoot !== undefined,
  );
  if (firstBoot) return { ...recorded, state: 'done', verdict: firstBoot };
  // cloud-init finished, and the guest went down before holos's line: over, verdict unknown.
  return cloudInitFinished ? { ...recorded, state: 'done' } : recorded;
}

/** The phase of an inspected instance (its boot read with `boot: 'phase'`). */
export function phaseOf(state: InstanceState): Phase {
  if (state.state === 'absent') return 'created';
  if (state.state !== 'running') return state.state;
  const { boot } = state;
  if (!boot) return 'booting';
  if (boot.firstBoot === 'pending') return boot.thisBoot.cloudInit ? 'provisioning' : 'booting';
  return boot.thisBoot.finished ? (boot.verdict?.status ?? 'ready') : 'booting';
}

/**
 * The state of an instance from what was read of it: its record, the pid of its live QEMU and,
 * when asked, that QEMU's run state (without one, a live QEMU counts as `running`).
 */
export function stateOf(
  name: string,
  layout: InstanceLayout,
  seen: { applied?: AppliedRecord; pid?: number; status?: RunState; boot?: BootState },
): InstanceState {
  const { applied, pid, status, boot } = seen;
  const { service, index } = applied
    ? { service: applied.spec.service, index: applied.spec.index }
    : parseInstanceName(name);
  const base = { name, service, index, layout, ...(applied && { applied }), ...(boot && { boot }) };
  if (pid === undefined) {
    const state: RunState = !applied ? 'absent' : applied.state === 'running' ? 'exited' : 'stopped';
    return { ...base, state };
  }
  return status === undefined ? { ...base, pid, state: 'running' } : { ...base, pid, status, state: status };
}

/** Service, then replica order. */
export const byServiceAndIndex = (a: InstanceState, b: InstanceState) =>
  a.service.localeCompare(b.service) || a.index - b.index;

/** The names of the instance directories of a project. */
export async function instancesOnDisk(layout: ProjectLayout): Promise<string[]> {
  const entries = await readdir(layout.dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => e.name);
}

/** Every instance of the project on disk, in service then replica order. */
export async function inspectProject(
  layout: ProjectLayout,
  options: InspectOptions = {},
): Promise<InstanceState[]> {
  const names = await instancesOnDisk(layout);
  const states = await Promise.all(names.map((name) => inspect(name, layout.instance(name), options)));
  return states.sort(byServiceAndIndex);
}

/** The files a disk is made on, nearest first, from the qcow2 headers (not the disk itself). */
export async function backingChain(disk: string): Promise<string[]> {
  const chain: string[] = [];
  let path: string | undefined = disk;
  while (path) {
    const header: Qcow2Header | undefined = await readQcow2Header(path).catch(() => undefined);
    path = header?.backingFile;
    if (path && (path === disk || chain.includes(path))) break;
    if (path) chain.push(path);
  }
  return chain;
}

/**
 * Which instances' disks are made on each file (the image cache's, by absolute path), from the
 * backing chain of every root disk in the state dir, as `<project>/<instance>`.
 */
export async function imageUsers(stateDir: string): Promise<Map<string, string[]>> {
  const users = new Map<string, string[]>();
  for (const project of await readdir(join(stateDir, 'instances')).catch(() => [])) {
    const layout = projectLayout(stateDir, project);
    for (const instance of await instancesOnDisk(layout))
      for (const path of await backingChain(layout.instance(instance).overlay))
        users.set(path, [...(users.get(path) ?? []), `${project}/${instance}`]);
  }
  return users;
}
