import { findComposeFiles } from '../compose/load.js';
import { UserError } from '../errors.js';
import { openProject } from '../session.js';
import * as keypair from '../resources/keypair.js';
import type { SshTarget } from '../ssh/exec.js';
import { inspect, inspectProject, type InstanceState } from '../state/inspect.js';
import { projectLayout, type ProjectLayout } from '../state/layout.js';
import { projectsIn } from '../state/project.js';
import { sshTargetOf as targetOfRecord, type AppliedRecord } from '../state/records.js';

// Which project and which instance a command of exec, console, logs and ssh-config means.
// The project comes from the compose file (or -p alone, from the state dir); the instances
// are the ones on disk, observed now, so these verbs work on whatever is really there.

export interface AccessProject {
  name: string;
  layout: ProjectLayout;
  /** The services the file declares, in file order; without a file, those of the instances on disk. */
  services: string[];
  /** The instances the file declares (some may not exist yet). */
  declared: string[];
}

/** An instance as the host has it now (state/inspect.ts). */
export type InstanceInfo = InstanceState;

/**
 * The project of the compose file (-f, $HOLOS_FILE, ./holos.yaml); with -p and no file, the
 * project of that name in the state dir.
 */
export async function openAccessProject(
  stateDir: string,
  options: { cwd: string; files?: readonly string[]; projectName?: string },
): Promise<AccessProject> {
  let files: string[] | undefined;
  try {
    files = findComposeFiles(options.cwd, options.files);
  } catch (error) {
    if (!(error instanceof UserError) || options.files?.length) throw error;
    if (!options.projectName) {
      const known = await projectsIn(stateDir);
      throw new UserError(
        `${error.message}${known.length > 0 ? `, or name a project with -p (projects in ${stateDir}: ${known.join(', ')})` : ''}`,
      );
    }
  }
  if (files === undefined) {
    const name = options.projectName!;
    const layout = projectLayout(stateDir, name);
    const known = await projectsIn(stateDir);
    if (!known.includes(name))
      throw new UserError(
        `no project ${name} in ${stateDir}${known.length > 0 ? ` (projects: ${known.join(', ')})` : ''}`,
      );
    const services = [...new Set((await listInstances(layout)).map((i) => i.service))];
    return { name, layout, services, declared: [] };
  }
  const session = await openProject(stateDir, { ...options, files });
  return {
    name: session.project.name,
    layout: session.layout,
    services: session.project.services.map((s) => s.name),
    declared: session.project.instances.map((i) => i.name),
  };
}

/**
 * Every instance with a directory in the state dir, in service then index order. Cheap: the
 * applied record and a /proc check per instance, no QMP (`observeInstance` asks QEMU).
 */
export const listInstances = (layout: ProjectLayout): Promise<InstanceInfo[]> => inspectProject(layout);

/** The instance observed in full: its QMP run state too (paused, shutdown, …). */
export const observeInstance = (info: InstanceInfo): Promise<InstanceInfo> =>
  inspect(info.name, info.layout, { qmp: true });

/** `web-0 (running), db-0 (stopped)`, for error messages. */
export function describeInstances(instances: readonly InstanceInfo[]): string {
  return instances.length === 0
    ? 'it has no instances; holos up creates them'
    : `instances: ${instances.map((i) => `${i.name} (${i.state})`).join(', ')}`;
}

/** An instance by name, or a service's replica 0 by the service's name. */
export function pickInstance(
  project: AccessProject,
  instances: readonly InstanceInfo[],
  name: string,
): InstanceInfo {
  const exact = instances.find((i) => i.name === name);
  if (exact) return exact;
  const first = instances.find((i) => i.service === name && i.index === 0);
  if (first) return first;
  const known = project.declared.includes(name) || project.services.includes(name);
  throw new UserError(
    `${known ? `${name} has not been created yet` : `no instance or service ${name} in project ${project.name}`}; ${describeInstances(instances)}`,
  );
}

/** The instance's applied record, provided its VM is running; else a UserError saying what it is. */
export function requireRunning(info: InstanceInfo, instances: readonly InstanceInfo[]): AppliedRecord {
  const { applied } = info;
  if (info.pid !== undefined && info.state === 'running' && applied) return applied;
  const hint =
    info.state === 'paused'
      ? 'resume it with holos up'
      : info.pid === undefined
        ? `start it with holos start ${info.service}`
        : 'holos up repairs it';
  throw new UserError(`${info.name} is ${info.state}; ${hint} (${describeInstances(instances)})`);
}

/** Where and how to SSH into a running instance: its forwarded port, the project key, the pinned host key. */
export async function sshTargetOf(
  project: AccessProject,
  applied: AppliedRecord,
  user?: string,
): Promise<SshTarget> {
  const key = await keypair.read(keypair.projectKeySpec(project.layout));
  if (!key)
    throw new UserError(
      `no SSH key for project ${project.name} in ${project.layout.sshDir}; holos up makes it`,
    );
  return targetOfRecord(applied, key.privateKey, user);
}

/** The named instance (or service's replica 0), which must be running, and its applied record. */
export async function runningInstance(
  project: AccessProject,
  name: string,
): Promise<{ info: InstanceInfo; applied: AppliedRecord }> {
  const instances = await listInstances(project.layout);
  const info = await observeInstance(pickInstance(project, instances, name));
  return { info, applied: requireRunning(info, instances) };
}
