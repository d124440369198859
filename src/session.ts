import { loadCompose, type LoadedCompose } from './compose/load.js';
import { resolveProject, type ResolvedProject } from './compose/resolve.js';
import { checkIdentity, compareFiles } from './state/identity.js';
import { projectLayout, type ProjectLayout } from './state/layout.js';
import { readProjectRecord } from './state/project.js';
import { readImageLock, type ImageLock } from './images/lockfile.js';

// The project a verb acts on: the compose file, loaded and resolved against the project's
// record in the state dir (the file it belongs to, the addresses handed out before), or a
// project known only from the state dir. Every verb opens one here, reconciling or not.

export interface Session {
  project: ResolvedProject;
  layout: ProjectLayout;
  /** The version of each image the project's disks were made on (by source key). */
  imagePins: Record<string, string>;
  /** holos.images.lock beside the compose file. */
  imageLock?: ImageLock;
  /** Said once to the user: the project was adopted from a file that moved, or taken over. */
  notice?: string;
}

export interface OpenOptions {
  cwd: string;
  files?: readonly string[];
  projectName?: string;
  /** `up --take-over`: the project may be managed from this file although another one made it. */
  takeOver?: boolean;
}

/**
 * Resolves a loaded compose file against the project's record: refused when another compose
 * file manages a project of that name (identity.ts); the addresses handed out before are kept.
 * Callers that change the project call it under the project's lock, so the record is current.
 */
export async function openLoaded(
  stateDir: string,
  loaded: LoadedCompose,
  options: { takeOver?: boolean } = {},
): Promise<Session> {
  const layout = projectLayout(stateDir, loaded.project);
  const previous = await readProjectRecord(layout);
  const notice = checkIdentity(previous, loaded.file, { takeOver: options.takeOver, compare: compareFiles });
  const imageLock = await readImageLock(loaded.dir);
  return {
    project: resolveProject(loaded, previous?.allocation),
    layout,
    imagePins: previous?.images ?? {},
    ...(imageLock && { imageLock }),
    ...(notice && { notice }),
  };
}

/** Loads and resolves the compose file, keeping the addresses handed out before. */
export async function openProject(stateDir: string, options: OpenOptions): Promise<Session> {
  return openLoaded(stateDir, loadCompose(options), options);
}

/** A project known only from the state dir: no services, so every instance on disk is a stray. */
export function emptyProject(name: string, stateDir: string): Session {
  const project: ResolvedProject = {
    name,
    file: '',
    files: [],
    dir: '',
    services: [],
    levels: [],
    instances: [],
    volumes: {},
    networks: [],
    allocation: { networks: {} },
  };
  return { project, layout: projectLayout(stateDir, name), imagePins: {} };
}
