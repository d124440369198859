import { resolve } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { qemuBinaries } from '../qemu/binaries.js';
import { convertToQcow2 } from '../qemu/convert.js';
import { exists } from '../util/fs.js';
import {
  deleteLive,
  disksOf,
  findSnapshot,
  isLive,
  isRunning,
  loadLive,
  offline,
  saveLive,
  snapshotsIn,
  withQmp,
  type SnapshotDisk,
  type SnapshotInfo,
} from '../qemu/snapshot.js';
import {
  listInstances,
  observeInstance,
  openAccessProject,
  type AccessProject,
  type InstanceInfo,
} from '../access/target.js';
import { UserError } from '../errors.js';
import { acquireLock } from '../state/lock.js';
import { stateDirOf, type GlobalOptions } from './context.js';
import { table } from './output.js';

// `holos snapshot save|ls|restore|rm`: snapshots of an instance, of a service's instances or of
// the whole stack (--all), taken at one moment: every live VM of the selection is paused before
// the first is saved and resumed after the last, so a stack comes back as it was at one instant
// (qemu/snapshot.ts does the disks). Under the project's lock: no up or watch changes a VM
// meanwhile. A restore says what it throws away and asks first (or takes --yes).

export interface SnapshotOptions {
  all?: boolean;
  yes?: boolean;
  format?: string;
}

type Op = 'save' | 'ls' | 'restore' | 'rm';

interface Member {
  info: InstanceInfo;
  disks: SnapshotDisk[];
}

const snapshotName = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** `snap-20261202-071530`, in UTC: sorts as it was taken. */
const defaultName = () =>
  `snap-${new Date().toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-')}`;

/** The instances a target names: one instance, a service's, or (--all, or ls without one) every one. */
function select(project: AccessProject, instances: InstanceInfo[], target: string | undefined, all: boolean) {
  if (all || target === undefined) return instances;
  const exact = instances.filter((i) => i.name === target);
  const chosen = exact.length > 0 ? exact : instances.filter((i) => i.service === target);
  if (chosen.length > 0) return chosen;
  const declared = project.services.includes(target) || project.declared.includes(target);
  throw new UserError(
    declared
      ? `${target} has not been created yet; holos up creates it`
      : `no instance or service ${target} in project ${project.name}; holos ps lists them`,
  );
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY) return false;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}

export async function snapshot(
  globals: GlobalOptions,
  op: Op,
  target: string | undefined,
  name: string | undefined,
  options: SnapshotOptions,
): Promise<void> {
  if (op !== 'ls' && target === undefined && !options.all)
    throw new UserError(
      `holos snapshot ${op}: name an instance or a service, or give --all for the whole stack`,
    );
  if (op !== 'save' && op !== 'ls' && name === undefined)
    throw new UserError(`holos snapshot ${op}: name the snapshot; holos snapshot ls lists them`);
  if (name !== undefined && !snapshotName.test(name))
    throw new UserError(
      `snapshot name ${JSON.stringify(name.slice(0, 70))}: use letters, digits, ".", "_" and "-", at most 64`,
    );
  if (options.format !== undefined && options.format !== 'table' && options.format !== 'json')
    throw new UserError(`--format ${options.format}: use table or json`);
  const project = await openAccessProject(stateDirOf(globals), {
    cwd: process.cwd(),
    files: globals.file,
    projectName: globals.projectName,
  });
  const { img } = qemuBinaries();
  if (op === 'ls') return list(project, img, target, options);

  const lock = await acquireLock(project.layout.lock, project.name, {});
  try {
    // Observed under the lock: what runs now, and the disks each writes.
    const instances = await Promise.all((await listInstances(project.layout)).map(observeInstance));
    const members: Member[] = select(project, instances, target, options.all ?? false)
      .filter((info) => info.applied)
      .map((info) => ({ info, disks: disksOf(project.layout, info) }));
    if (members.length === 0) throw new UserError(`nothing to snapshot: no instance of it has been started`);
    if (op === 'save') await save(project, img, members, name ?? defaultName());
    else if (op === 'restore') await restore(project, img, members, name!, options.yes ?? false);
    else await remove(project, img, members, name!);
  } finally {
    await lock.release();
  }
}

/**
 * Runs `fn` on every member with every live one paused first and resumed after (those that
 * ran): one moment for all. Offline members need no pause.
 */
async function atOneMoment(
  project: AccessProject,
  members: readonly Member[],
  fn: (member: Member) => Promise<void>,
): Promise<void> {
  const live = members.filter((m) => isLive(m.info));
  const wasRunning = new Set<string>();
  try {
    for (const m of live)
      await withQmp(project.layout, m.info.name, async (qmp) => {
        if (await isRunning(qmp)) {
          await qmp.execute('stop');
          wasRunning.add(m.info.name);
        }
      });
    for (const m of members) await fn(m);
  } finally {
    for (const name of wasRunning) await withQmp(project.layout, name, (qmp) => qmp.execute('cont'));
  }
}

async function save(project: AccessProject, img: string, members: Member[], name: string): Promise<void> {
  for (const m of members)
    if ((await snapshotsIn(img, m.disks[0]!.path)).some((s) => s.name === name))
      throw new UserError(
        `${m.info.name} already has a snapshot ${name}; pick another name or holos snapshot rm it`,
      );
  const started = Date.now();
  await atOneMoment(project, members, async (m) => {
    const t = Date.now();
    if (isLive(m.info)) await withQmp(project.layout, m.info.name, (qmp) => saveLive(qmp, m.disks, name));
    else await offline(img, 'save', m.disks, name);
    console.error(
      `${m.info.name}: snapshot ${name} saved (${isLive(m.info) ? 'running: disks and RAM' : 'stopped: disks'}: ${m.disks.map((d) => d.label).join(', ')}) in ${seconds(Date.now() - t)}`,
    );
  });
  if (members.length > 1)
    console.error(
      `snapshot ${name}: ${members.length} instances at one moment in ${seconds(Date.now() - started)}`,
    );
  console.log(name);
}

async function restore(
  project: AccessProject,
  img: string,
  members: Member[],
  name: string,
  yes: boolean,
): Promise<void> {
  const found = new Map<string, SnapshotInfo>();
  for (const m of members) {
    const snap = await findSnapshot(img, name, m.info.name, m.disks);
    if (isLive(m.info) && snap.vmState === 0)
      throw new UserError(
        `${m.info.name}'s snapshot ${name} was taken while it was stopped (disks only): stop it first (holos stop ${m.info.service}), restore, then start it`,
      );
    found.set(m.info.name, snap);
  }
  const lines = members.map((m) => {
    const snap = found.get(m.info.name)!;
    const after = isLive(m.info)
      ? 'it continues from that moment'
      : snap.vmState > 0
        ? 'it boots from those disks when started (the RAM saved with them is not used)'
        : 'it boots from those disks when started';
    return `  ${m.info.name}: back to ${name} (taken ${snap.date}); what its ${m.disks.map((d) => d.label).join(' and ')} got since is lost; ${after}`;
  });
  console.error(`restore:\n${lines.join('\n')}`);
  if (!yes && !(await confirm('restore?')))
    throw new UserError(
      process.stdin.isTTY
        ? 'not restored'
        : 'restore throws data away: confirm it with --yes (no terminal to ask)',
    );
  const started = Date.now();
  await atOneMoment(project, members, async (m) => {
    if (isLive(m.info)) await withQmp(project.layout, m.info.name, (qmp) => loadLive(qmp, m.disks, name));
    else await offline(img, 'restore', m.disks, name);
  });
  console.error(
    `restored ${name} on ${members.map((m) => m.info.name).join(', ')} in ${seconds(Date.now() - started)}`,
  );
}

async function remove(project: AccessProject, img: string, members: Member[], name: string): Promise<void> {
  for (const m of members) await findSnapshot(img, name, m.info.name, m.disks);
  for (const m of members) {
    if (isLive(m.info)) await withQmp(project.layout, m.info.name, (qmp) => deleteLive(qmp, m.disks, name));
    else await offline(img, 'delete', m.disks, name);
    console.error(`${m.info.name}: snapshot ${name} removed`);
  }
}

/**
 * `holos export <instance> <file.qcow2> [--snapshot name]`: the instance's root disk flattened
 * (its base image folded in) into one standalone qcow2, usable as `image:` anywhere: as it is
 * now (the VM stopped: a running one's disk changes under the copy), or as it was at a snapshot
 * (read as it stands in the disk, the VM may run).
 */
export async function exportDisk(
  globals: GlobalOptions,
  target: string,
  file: string,
  options: { snapshot?: string },
): Promise<void> {
  const project = await openAccessProject(stateDirOf(globals), {
    cwd: process.cwd(),
    files: globals.file,
    projectName: globals.projectName,
  });
  const { img } = qemuBinaries();
  const out = resolve(file);
  if (await exists(out)) throw new UserError(`${out} exists; holos never overwrites a file: name another`);
  const lock = await acquireLock(project.layout.lock, project.name, {});
  try {
    const instances = await listInstances(project.layout);
    const info =
      instances.find((i) => i.name === target) ??
      instances.find((i) => i.service === target && i.index === 0);
    if (!info?.applied)
      throw new UserError(
        `no instance ${target} with a root disk in project ${project.name}; holos ps lists them`,
      );
    const [root] = disksOf(project.layout, info);
    if (options.snapshot !== undefined) await findSnapshot(img, options.snapshot, info.name, [root!]);
    else if (info.pid !== undefined)
      throw new UserError(
        `${info.name} is running, so its disk changes under the copy: stop it (holos stop ${info.service}), or export a snapshot (holos snapshot save ${info.name} first, then --snapshot)`,
      );
    const started = Date.now();
    const from = options.snapshot === undefined ? [] : ['-U', '-l', `snapshot.name=${options.snapshot}`];
    await convertToQcow2(img, root!.path, out, from);
    console.error(
      `${info.name}: root disk${options.snapshot ? ` at ${options.snapshot}` : ''} exported in ${seconds(Date.now() - started)}`,
    );
    console.log(out);
  } finally {
    await lock.release();
  }
}

async function list(
  project: AccessProject,
  img: string,
  target: string | undefined,
  options: SnapshotOptions,
) {
  const instances = select(project, await listInstances(project.layout), target, options.all ?? false);
  const rows: { instance: string; name: string; date: string; ram: boolean; disks: string[] }[] = [];
  for (const info of instances) {
    if (!info.applied) continue;
    const disks = disksOf(project.layout, info);
    const perDisk = await Promise.all(disks.map((d) => snapshotsIn(img, d.path).catch(() => [])));
    // A snapshot of the instance is one its root disk has; the disks that have it too are listed.
    for (const snap of perDisk[0] ?? [])
      rows.push({
        instance: info.name,
        name: snap.name,
        date: snap.date,
        ram: snap.vmState > 0,
        disks: disks.filter((_, i) => perDisk[i]!.some((s) => s.name === snap.name)).map((d) => d.label),
      });
  }
  if (options.format === 'json') {
    console.log(JSON.stringify({ schema_version: 1, snapshots: rows }));
    return;
  }
  if (rows.length === 0) {
    console.log(
      `no snapshots in project ${project.name}; holos snapshot save <instance|service> [name] takes one`,
    );
    return;
  }
  console.log(
    table([
      ['INSTANCE', 'SNAPSHOT', 'TAKEN', 'RAM', 'DISKS'],
      ...rows.map((r) => [
        r.instance,
        r.name,
        r.date.replace('T', ' ').slice(0, 19),
        r.ram ? 'yes' : 'no',
        r.disks.join(', '),
      ]),
    ]),
  );
}
