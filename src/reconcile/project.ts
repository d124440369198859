import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { networkOf, type Allocation, type ResolvedProject } from '../compose/resolve.js';
import { projectLayout, type ProjectLayout } from '../resources/layout.js';
import { readJson, writeAtomically } from '../util/fs.js';

// The project record: what must survive between runs and be known without the compose file
// (the file it came from, the addresses handed out), for `ps` and `down <project>`.

export interface ProjectRecord {
  schema_version: 1;
  name: string;
  file: string;
  allocation: Allocation;
  /** Services a user stopped (`holos stop`): `watch` leaves them stopped until `start` or `up`. */
  stopped?: string[];
}

export const readProjectRecord = (layout: ProjectLayout) => readJson<ProjectRecord>(layout.record);

/**
 * Records the project's file and allocation; `stopped` lists services to add to (true) or
 * drop from (false) the user-stopped set.
 */
export async function writeProjectRecord(
  layout: ProjectLayout,
  project: ResolvedProject,
  stopped?: { services: string[]; stopped: boolean },
): Promise<void> {
  await mkdir(layout.stateDir, { recursive: true, mode: 0o700 });
  await mkdir(layout.dir, { recursive: true, mode: 0o700 });
  const kept = new Set((await readProjectRecord(layout))?.stopped ?? []);
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
  };
  await writeAtomically(layout.record, `${JSON.stringify(record, null, 2)}\n`);
}

/** Every project with a directory in the state dir. */
export async function projectsIn(stateDir: string): Promise<string[]> {
  const entries = await readdir(join(stateDir, 'instances'), { withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
}

/** A project known only from the state dir: no services, so every instance on disk is a stray. */
export function emptyProject(
  name: string,
  stateDir: string,
): { project: ResolvedProject; layout: ProjectLayout } {
  const project: ResolvedProject = {
    name,
    file: '',
    dir: '',
    services: [],
    levels: [],
    instances: [],
    volumes: {},
    network: { ...networkOf(name), hosts: {} },
    allocation: { instances: {} },
  };
  return { project, layout: projectLayout(stateDir, name) };
}

/**
 * After `down`: the project's directory goes once no instance is left in it; its named volumes
 * only when asked (`--volumes`). Keys stay, so a later `up` can still reach old backups.
 */
export async function forgetProject(stateDir: string, name: string, volumes: boolean): Promise<void> {
  const { rm } = await import('node:fs/promises');
  const layout = projectLayout(stateDir, name);
  const left = (await readdir(layout.dir, { withFileTypes: true }).catch(() => [])).filter((e) =>
    e.isDirectory(),
  );
  if (left.length === 0) await rm(layout.dir, { recursive: true, force: true });
  if (volumes) await rm(layout.volumesDir, { recursive: true, force: true });
}
