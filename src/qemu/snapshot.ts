import { UserError } from '../errors.js';
import { QmpClient } from '../observe/qmp.js';
import type { InstanceState } from '../state/inspect.js';
import type { ProjectLayout } from '../state/layout.js';
import { sleep } from '../util/sleep.js';

// Snapshots of instances: internal qcow2 snapshots of every disk an instance writes (its root
// disk and the named volumes it mounts read-write), taken together under one name, so that a
// restore never pairs a root disk with a volume from another moment. A running VM is
// snapshotted by QEMU (the `snapshot-save` job, which keeps the RAM too, in the root disk: a
// restored VM continues where it was); a stopped one by `qemu-img snapshot`, disks only. The
// snapshots live in the disks: a root disk made anew (`down`, a recreate) goes with its own.

/** A disk of the instance that a snapshot covers. */
export interface SnapshotDisk {
  /** QEMU's drive id (`root`, or a volume's serial) and what a person calls it. */
  drive: string;
  label: string;
  path: string;
}

export interface SnapshotInfo {
  name: string;
  /** When it was taken (ISO 8601). */
  date: string;
  /** Bytes of RAM state: 0 for a snapshot of a stopped VM (disks only). */
  vmState: number;
}

/** The disks an instance writes, from the spec it runs with. */
export function disksOf(layout: ProjectLayout, state: InstanceState): SnapshotDisk[] {
  const files = layout.instance(state.name);
  const volumes = Object.values(state.applied?.spec.mounts ?? {}).flatMap((m) =>
    m.type === 'volume' && !m.readOnly
      ? [{ drive: m.device, label: `volume ${m.source}`, path: layout.volume(m.source) }]
      : [],
  );
  return [{ drive: 'root', label: 'root disk', path: files.overlay }, ...volumes];
}

/** Whether QEMU runs the instance (running or paused): its disks are QEMU's to snapshot. */
export const isLive = (state: InstanceState) => state.pid !== undefined && state.status !== 'unresponsive';

async function qemuImg(qemuImgPath: string, args: string[]): Promise<string> {
  const { execa } = await import('execa');
  const result = await execa(qemuImgPath, args, { reject: false });
  if (result.exitCode !== 0) throw new Error(`qemu-img ${args.join(' ')}: ${result.stderr.trim()}`);
  return result.stdout;
}

/** The snapshots in one disk, read without taking its lock (a running QEMU holds it). */
export async function snapshotsIn(qemuImgPath: string, path: string): Promise<SnapshotInfo[]> {
  const info = JSON.parse(await qemuImg(qemuImgPath, ['info', '--output=json', '-U', path])) as {
    snapshots?: { name: string; 'date-sec': number; 'vm-state-size': number }[];
  };
  return (info.snapshots ?? []).map((s) => ({
    name: s.name,
    date: new Date(s['date-sec'] * 1000).toISOString(),
    vmState: s['vm-state-size'],
  }));
}

/**
 * An instance's snapshot by name, provided every disk it writes has it (a volume attached
 * since, or a root disk made anew, does not: that is said, and nothing is restored).
 */
export async function findSnapshot(
  qemuImgPath: string,
  name: string,
  instance: string,
  disks: readonly SnapshotDisk[],
): Promise<SnapshotInfo> {
  let root: SnapshotInfo | undefined;
  for (const disk of disks) {
    const found = (await snapshotsIn(qemuImgPath, disk.path)).find((s) => s.name === name);
    if (!found)
      throw new UserError(
        `${instance} has no snapshot ${name} in its ${disk.label}; holos snapshot ls ${instance} lists them`,
      );
    root ??= found;
  }
  return root!;
}

/**
 * How long a reply may take while a snapshot job runs. QEMU writes the VM's RAM from its main
 * loop, so the monitor answers nothing until that is done: seconds for a small VM on an idle
 * host, minutes for many GiB or a busy disk. The connection's usual 10 s would call that a hang.
 */
const JOB_REPLY_TIMEOUT_MS = 30 * 60_000;

/** Runs a QMP job (snapshot-save, -load, -delete) to its end; its error, if any, thrown. */
async function runJob(qmp: QmpClient, command: string, args: Record<string, unknown>): Promise<void> {
  const id = `holos-${command}-${process.pid}-${Date.now()}`;
  const wait = { timeoutMs: JOB_REPLY_TIMEOUT_MS };
  await qmp.execute(command, { 'job-id': id, ...args }, wait);
  for (;;) {
    const jobs = await qmp.execute<{ id: string; status: string; error?: string }[]>(
      'query-jobs',
      undefined,
      wait,
    );
    const job = jobs.find((j) => j.id === id);
    if (!job || job.status === 'concluded') {
      await qmp.execute('job-dismiss', { id }, wait).catch(() => undefined);
      if (job?.error) throw new Error(`${command}: ${job.error}`);
      return;
    }
    await sleep(50);
  }
}

/** The QMP node of each disk, by drive id (the nodes are QEMU's names, not ours). */
async function nodesOf(qmp: QmpClient, disks: readonly SnapshotDisk[]): Promise<string[]> {
  const blocks = await qmp.execute<{ device: string; inserted?: { 'node-name': string } }[]>('query-block');
  return disks.map((disk) => {
    const node = blocks.find((b) => b.device === disk.drive)?.inserted?.['node-name'];
    if (!node) throw new Error(`QEMU has no drive ${disk.drive} (${disk.label})`);
    return node;
  });
}

/** A connection to a running instance's QEMU, closed after `fn`. */
export async function withQmp<T>(
  layout: ProjectLayout,
  instance: string,
  fn: (qmp: QmpClient) => Promise<T>,
): Promise<T> {
  const qmp = await QmpClient.connect(layout.instance(instance).qmpSocket, { timeoutMs: 10_000 });
  try {
    return await fn(qmp);
  } finally {
    qmp.close();
  }
}

/** Takes snapshot `name` of a running VM: every disk at one moment, and its RAM (into the root disk). */
export async function saveLive(qmp: QmpClient, disks: readonly SnapshotDisk[], name: string): Promise<void> {
  const nodes = await nodesOf(qmp, disks);
  await runJob(qmp, 'snapshot-save', { tag: name, vmstate: nodes[0], devices: nodes });
}

/** Loads snapshot `name` into a VM under QEMU: its disks and RAM go back to that moment (it stays paused). */
export async function loadLive(qmp: QmpClient, disks: readonly SnapshotDisk[], name: string): Promise<void> {
  const nodes = await nodesOf(qmp, disks);
  await runJob(qmp, 'snapshot-load', { tag: name, vmstate: nodes[0], devices: nodes });
}

/** Whether the guest's CPUs run (not paused, not held at its first instruction). */
export const isRunning = async (qmp: QmpClient) =>
  (await qmp.execute<{ running: boolean }>('query-status')).running;

export async function deleteLive(
  qmp: QmpClient,
  disks: readonly SnapshotDisk[],
  name: string,
): Promise<void> {
  const nodes = await nodesOf(qmp, disks);
  await runJob(qmp, 'snapshot-delete', { tag: name, devices: nodes });
}

/** The same for a stopped VM, disk by disk: `qemu-img snapshot -c` (take), `-a` (apply), `-d` (delete). */
export async function offline(
  qemuImgPath: string,
  op: 'save' | 'restore' | 'delete',
  disks: readonly SnapshotDisk[],
  name: string,
): Promise<void> {
  const flag = { save: '-c', restore: '-a', delete: '-d' }[op];
  for (const disk of disks) await qemuImg(qemuImgPath, ['snapshot', flag, name, disk.path]);
}
