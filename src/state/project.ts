import { mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { RecordedAllocation, ResolvedProject } from '../compose/resolve.js';
import type { ProjectLayout } from './layout.js';
import { readJson, writeAtomically } from '../util/fs.js';

// The project record: what must survive between runs and be known without the compose file
// (the file it came from, the addresses handed out), for `ps`, `down <project>` and the check
// that one name is not managed from two files (project identity, see identity.ts).

export interface ProjectRecord {
  schema_version: 1;
  name: string;
  /** The compose file the project is managed from, absolute; empty when it never had one. */
  file: string;
  allocation: RecordedAllocation;
  /** Services a user stopped (`holos stop`): `watch` leaves them stopped until `start` or `up`. */
  stopped?: string[];
  /**
   * The version of each image (by its cache key) that the project's disks are made on, so that
   * a newer pull never moves them by surprise (resources/image.ts).
   */
  images?: Record<string, string>;
}

export const readProjectRecord = async (layout: ProjectLayout) =>
  (await readJson<ProjectRecord>(layout.record)) ?? (await readJson<ProjectRecord>(layout.legacyRecord));

/**
 * Records the project's file and allocation; `stopped` lists services to add to (true) or
 * drop from (false) the user-stopped set.
 */
export async function writeProjectRecord(
  layout: ProjectLayout,
  project: ResolvedProject,
  stopped?: { services: string[]; stopped: boolean },
  images: Record<string, string> = {},
): Promise<void> {
  await mkdir(layout.stateDir, { recursive: true, mode: 0o700 });
  await mkdir(dirname(layout.record), { recursive: true, mode: 0o700 });
  const previous = await readProjectRecord(layout);
  const kept = new Set(previous?.stopped ?? []);
  for (const service of stopped?.services ?? []) {
    if (stopped!.stopped) kept.add(service);
    else kept.delete(service);
  }
  const record: ProjectRecord = {
    schema_version: 1,
    name: project.name,
    file: project.file,
    allocation: project.allocation,
    stopped: [...kept].sort(),
    images: { ...previous?.images, ...images },
  };
  await writeAtomically(layout.record, `${JSON.stringify(record, null, 2)}\n`);
  await rm(layout.legacyRecord, { force: true });
}

const namesIn = async (dir: string, keep: (entry: { name: string; isDirectory(): boolean }) => boolean) =>
  (await readdir(dir, { withFileTypes: true }).catch(() => [])).filter(keep).map((e) => e.name);

/**
 * Every project of which anything is left in the state dir: instances, named volumes, keys or
 * its record. A project exists as long as any of them does, so `down <name> --volumes` still
 * finds one whose VMs a plain `down` removed.
 */
export async function projectsIn(stateDir: string): Promise<string[]> {
  const dirs = (sub: string) => namesIn(join(stateDir, sub), (e) => e.isDirectory());
  const records = (await namesIn(join(stateDir, 'projects'), (e) => e.name.endsWith('.json'))).map((n) =>
    n.slice(0, -'.json'.length),
  );
  const all = [...(await dirs('instances')), ...(await dirs('volumes')), ...(await dirs('ssh')), ...records];
  return [...new Set(all)].sort();
}

/**
 * After `down`, under the project's lock: the instances directory goes once no instance is
 * left in it. With `--volumes` the whole project goes (its named volumes were removed by the
 * plan): its keys and its record, so that the name is free for another compose file.
 */
export async function forgetProject(layout: ProjectLayout, everything: boolean): Promise<void> {
  const left = await namesIn(layout.dir, (e) => e.isDirectory());
  if (left.length === 0) {
    await rm(layout.dir, { recursive: true, force: true });
    // No disk is made on the pinned image versions any more: the next up takes the newest.
    const record = await readProjectRecord(layout);
    if (record?.images && !everything) {
      const { images: _dropped, ...rest } = record;
      await writeAtomically(layout.record, `${JSON.stringify(rest, null, 2)}\n`);
    }
  }
  if (!everything || left.length > 0) return;
  // A volume the plan did not remove (it failed) keeps the project, and so its keys and record.
  if ((await namesIn(layout.volumesDir, () => true)).length > 0) return;
  await rm(layout.volumesDir, { recursive: true, force: true });
  await rm(layout.sshDir, { recursive: true, force: true });
  await rm(layout.record, { force: true });
}
