import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { openAccessProject, type AccessProject } from '../access/target.js';
import { formatBytes, formatSize } from '../compose/units.js';
import { dnsLabel } from '../compose/schema.js';
import { UserError } from '../errors.js';
import { qemuBinaries } from '../qemu/binaries.js';
import { convertToQcow2 } from '../qemu/convert.js';
import { exists } from '../util/fs.js';
import { snapshotsIn } from '../qemu/snapshot.js';
import { observeVolume } from '../resources/volume.js';
import { inspectProject } from '../state/inspect.js';
import { projectLayout, type ProjectLayout } from '../state/layout.js';
import { acquireLock } from '../state/lock.js';
import { projectsIn } from '../state/project.js';
import { stateDirOf, type GlobalOptions } from './context.js';
import { table } from './output.js';

// `holos volumes ls|inspect|rm|export|import`: the named volumes in the state dir, for people.
// What uses a volume is read from the instances' records (the mounts they run with), so `rm`
// never takes a disk from under a VM, stopped or not.

interface VolumeRow {
  project: string;
  volume: string;
  file: string;
  /** The disk's size, and what it takes on the host. */
  size: number;
  allocated: number;
  /** Instances with a record that mounts it: `db-0 (running, rw)`. */
  used_by: { instance: string; state: string; read_only: boolean }[];
  snapshots: string[];
}

async function volumesOf(layout: ProjectLayout, qemuImg: string): Promise<VolumeRow[]> {
  const names = (await readdir(layout.volumesDir).catch(() => []))
    .filter((n) => n.endsWith('.qcow2'))
    .map((n) => n.slice(0, -'.qcow2'.length));
  const instances = await inspectProject(layout);
  return Promise.all(
    names.sort().map(async (volume) => {
      const file = layout.volume(volume);
      const [seen, st, snapshots] = await Promise.all([
        observeVolume(file),
        stat(file),
        snapshotsIn(qemuImg, file).catch(() => []),
      ]);
      const used_by = instances.flatMap((i) =>
        Object.values(i.applied?.spec.mounts ?? {})
          .filter((m) => m.type === 'volume' && m.source === volume)
          .map((m) => ({ instance: i.name, state: i.state, read_only: m.readOnly })),
      );
      return {
        project: layout.project,
        volume,
        file,
        size: seen.virtualSize ?? 0,
        allocated: st.blocks * 512,
        used_by,
        snapshots: snapshots.map((s) => s.name),
      };
    }),
  );
}

const usage = (row: VolumeRow) =>
  row.used_by.map((u) => `${u.instance} (${u.state}, ${u.read_only ? 'ro' : 'rw'})`).join(', ') || '-';

const openProjectOf = (globals: GlobalOptions) =>
  openAccessProject(stateDirOf(globals), {
    cwd: process.cwd(),
    files: globals.file,
    projectName: globals.projectName,
  });

export async function list(
  globals: GlobalOptions,
  options: { all?: boolean; format: string },
): Promise<void> {
  if (options.format !== 'table' && options.format !== 'json')
    throw new UserError(`--format ${options.format}: use table or json`);
  const stateDir = stateDirOf(globals);
  const layouts = options.all
    ? (await projectsIn(stateDir)).map((p) => projectLayout(stateDir, p))
    : [(await openProjectOf(globals)).layout];
  const { img } = qemuBinaries();
  const rows = (await Promise.all(layouts.map((l) => volumesOf(l, img)))).flat();
  if (options.format === 'json') {
    console.log(JSON.stringify({ schema_version: 1, volumes: rows }));
    return;
  }
  if (rows.length === 0) {
    console.log('no volumes');
    return;
  }
  console.log(
    table([
      ['PROJECT', 'VOLUME', 'SIZE', 'ON DISK', 'USED BY', 'SNAPSHOTS'],
      ...rows.map((r) => [
        r.project,
        r.volume,
        formatSize(r.size),
        formatBytes(r.allocated),
        usage(r),
        r.snapshots.join(', ') || '-',
      ]),
    ]),
  );
}

async function volumeNamed(project: AccessProject, name: string): Promise<VolumeRow> {
  const rows = await volumesOf(project.layout, qemuBinaries().img);
  const row = rows.find((r) => r.volume === name);
  if (row) return row;
  throw new UserError(
    `project ${project.name} has no volume ${name}${rows.length > 0 ? ` (volumes: ${rows.map((r) => r.volume).join(', ')})` : ''}`,
  );
}

export async function inspectVolume(globals: GlobalOptions, name: string): Promise<void> {
  console.log(JSON.stringify(await volumeNamed(await openProjectOf(globals), name), null, 2));
}

/** Under the project's lock: no up makes a VM mount it meanwhile. */
async function underLock<T>(project: AccessProject, fn: () => Promise<T>): Promise<T> {
  const lock = await acquireLock(project.layout.lock, project.name, {});
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

export async function remove(globals: GlobalOptions, names: string[]): Promise<void> {
  const project = await openProjectOf(globals);
  await underLock(project, async () => {
    const rows = await Promise.all(names.map((n) => volumeNamed(project, n)));
    const used = rows.filter((r) => r.used_by.length > 0);
    if (used.length > 0)
      throw new UserError(
        used
          .map(
            (r) =>
              `volume ${r.volume} is used by ${usage(r)}; remove its instances first (holos down), or the mount from the file and holos up`,
          )
          .join('\n'),
      );
    for (const r of rows) {
      await rm(r.file);
      console.log(`volume ${r.volume} removed`);
    }
  });
}

/** A standalone copy of a volume (qcow2), for another project or a backup; not while a VM writes it. */
export async function exportVolume(globals: GlobalOptions, name: string, to: string): Promise<void> {
  const project = await openProjectOf(globals);
  await underLock(project, async () => {
    const row = await volumeNamed(project, name);
    const writer = row.used_by.find((u) => !u.read_only && u.state !== 'stopped' && u.state !== 'absent');
    if (writer)
      throw new UserError(
        `volume ${name} is being written by ${writer.instance} (${writer.state}); stop it first (holos stop), or take a snapshot`,
      );
    const target = resolve(to);
    if (await exists(target))
      throw new UserError(`${target} exists; holos never overwrites a file: name another`);
    await convertToQcow2(qemuBinaries().img, row.file, target);
    console.log(target);
  });
}

/** A qcow2 or raw disk file as a new named volume of the project (a copy, converted to qcow2). */
export async function importVolume(globals: GlobalOptions, from: string, name: string): Promise<void> {
  if (!dnsLabel.test(name))
    throw new UserError(`volume name ${JSON.stringify(name)}: lowercase letters, digits and "-", at most 63`);
  const project = await openProjectOf(globals);
  await underLock(project, async () => {
    const file = project.layout.volume(name);
    if (await exists(file))
      throw new UserError(`project ${project.name} already has a volume ${name}; holos volumes rm it first`);
    const source = resolve(from);
    if (!(await stat(source).catch(() => undefined))?.isFile())
      throw new UserError(`${source} is not a file`);
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    // Converted, never copied: a qcow2 on a backing file comes in whole, standing on its own.
    await convertToQcow2(qemuBinaries().img, source, file);
    console.log(`volume ${name} imported (${formatSize((await observeVolume(file)).virtualSize ?? 0)})`);
  });
}
