import { readdir } from 'node:fs/promises';
import { isOurQemu, readPid } from '../observe/process.js';
import { queryStatus } from '../observe/qmp.js';
import { join } from 'node:path';
import { readQcow2Header, type Qcow2Header } from '../observe/qcow2.js';
import { projectLayout, type InstanceLayout, type ProjectLayout } from './layout.js';
import { readApplied, type AppliedRecord } from './records.js';

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
}

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
  options: { qmp?: boolean } = {},
): Promise<InstanceState> {
  const applied = await readApplied(layout);
  const pid = await readPid(layout.pidFile);
  const live = pid !== undefined && (await isOurQemu(pid, layout.qmpSocket));
  if (!live || !options.qmp) return stateOf(name, layout, { applied, ...(live && { pid }) });
  const status = await queryStatus(layout.qmpSocket, 2_000).then(asRunState, () => 'unresponsive' as const);
  return stateOf(name, layout, { applied, pid, status });
}

/**
 * The state of an instance from what was read of it: its record, the pid of its live QEMU and,
 * when asked, that QEMU's run state (without one, a live QEMU counts as `running`).
 */
export function stateOf(
  name: string,
  layout: InstanceLayout,
  seen: { applied?: AppliedRecord; pid?: number; status?: RunState },
): InstanceState {
  const { applied, pid, status } = seen;
  const { service, index } = applied
    ? { service: applied.spec.service, index: applied.spec.index }
    : parseInstanceName(name);
  const base = { name, service, index, layout, ...(applied && { applied }) };
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
  options: { qmp?: boolean } = {},
): Promise<InstanceState[]> {
  const names = await instancesOnDisk(layout);
  const states = await Promise.all(names.map((name) => inspect(name, layout.instance(name), options)));
  return states.sort(byServiceAndIndex);
}

/**
 * Which instances' disks are made on each file (the image cache's, by absolute path), from the
 * backing chain of every root disk in the state dir, as `<project>/<instance>`.
 */
export async function imageUsers(stateDir: string): Promise<Map<string, string[]>> {
  const users = new Map<string, string[]>();
  for (const project of await readdir(join(stateDir, 'instances')).catch(() => [])) {
    const layout = projectLayout(stateDir, project);
    for (const instance of await instancesOnDisk(layout)) {
      const seen = new Set<string>();
      let path: string | undefined = layout.instance(instance).overlay;
      while (path && !seen.has(path)) {
        seen.add(path);
        const header: Qcow2Header | undefined = await readQcow2Header(path).catch(() => undefined);
        path = header?.backingFile;
        if (path) users.set(path, [...(users.get(path) ?? []), `${project}/${instance}`]);
      }
    }
  }
  return users;
}
