import { findComposeFiles, loadCompose } from '../compose/load.js';
import { activeServices, activeServicesOf } from '../compose/profiles.js';
import type { Service } from '../compose/schema.js';
import { parseDuration } from '../compose/units.js';
import { UserError } from '../errors.js';
import { converge, planSession, type Converged } from '../reconcile/converge.js';
import { emptyProject, openLoaded, openProject, type Session } from '../session.js';
import { stamp, type Emit } from '../events.js';
import { observedStatus, projectStatus } from '../access/status.js';
import { targetsFor, type LifecycleVerb } from '../reconcile/targets.js';
import type { Targets } from '../reconcile/plan.js';
import { projectLayout, type ProjectLayout } from '../state/layout.js';
import { acquireLock } from '../state/lock.js';
import { waitUntilReady } from '../reconcile/ready.js';
import { forgetProject, projectsIn } from '../state/project.js';
import { createLogger, stateDirOf, type GlobalOptions } from './context.js';
import { eventPrinter, formatPlan, planJson, statusTable } from './output.js';

// The reconciler's verbs. Each asks targetsFor for what it wants of each service; the pipeline
// (reconcile/converge.ts) does the rest.

export interface MutateOptions {
  dryRun?: boolean;
  json?: boolean;
  /**
   * `--wait` (up, apply): wait until ready; `--no-wait`: do not wait for another holos's lock.
   * One attribute for both (commander pairs them); undefined is neither.
   */
  wait?: boolean;
  waitTimeout?: string;
  lockTimeout?: string;
  timeout?: string;
  takeOver?: boolean;
  volumes?: boolean;
  pull?: string;
  locked?: boolean;
}

/** `--pull` and `--locked` as plan targets. */
export function pullTargets(options: { pull?: string; locked?: boolean }): Pick<Targets, 'pull' | 'locked'> {
  const pull = options.pull ?? 'missing';
  if (pull !== 'missing' && pull !== 'always' && pull !== 'never')
    throw new UserError(`--pull ${pull}: use missing, always or never`);
  return { pull, ...(options.locked && { locked: true }) };
}

export function durationOption(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (typeof ms === 'string') throw new UserError(`${flag} ${text}: ${ms}`);
  return ms;
}

/** Services named on the command line, checked against the file. */
export function checkServices(all: readonly string[], named: readonly string[]): void {
  const unknown = named.filter((n) => !all.includes(n));
  if (unknown.length > 0)
    throw new UserError(`no service ${unknown.join(', ')} in the file; services: ${all.join(', ')}`);
}

interface Target {
  services: string[];
  /** Each service's spec, for its profiles. */
  specs: Record<string, Service>;
  layout: ProjectLayout;
  /** Reads the project's record; changing verbs call it under the project's lock. */
  open: () => Promise<Session>;
}

/** The compose file's project, or (`down <project>`) one known only from the state dir. */
async function projectOf(
  globals: GlobalOptions,
  options: { project?: string; takeOver?: boolean },
): Promise<Target> {
  const stateDir = stateDirOf(globals);
  if (options.project !== undefined) {
    const name = options.project;
    const known = await projectsIn(stateDir);
    if (!known.includes(name))
      throw new UserError(
        `no project ${name} in ${stateDir}${known.length > 0 ? ` (projects: ${known.join(', ')})` : ''}`,
      );
    const session = emptyProject(name, stateDir);
    return { services: [], specs: {}, layout: session.layout, open: () => Promise.resolve(session) };
  }
  const loaded = loadCompose({ cwd: process.cwd(), files: globals.file, projectName: globals.projectName });
  return {
    services: Object.keys(loaded.compose.services),
    specs: loaded.compose.services,
    layout: projectLayout(stateDir, loaded.project),
    open: () => openLoaded(stateDir, loaded, { takeOver: options.takeOver }),
  };
}

/**
 * A verb that changes the project: under its lock, plan once and apply that plan. `up`/`apply`
 * print the status table; `stop`/`start` record which services the user stopped (for watch);
 * `down` forgets the project afterwards.
 */
export async function mutate(
  globals: GlobalOptions,
  verb: Exclude<LifecycleVerb, 'plan' | 'watch'>,
  named: string[],
  options: MutateOptions,
  project?: string,
): Promise<void> {
  const target = await projectOf(globals, { project, takeOver: options.takeOver });
  checkServices(target.services, named);
  // Bad flags fail before the lock is taken and anything changes.
  const timeoutMs = durationOption(options.timeout, '--timeout');
  // Only up and apply have --wait; on the other verbs `wait` is the lock's (true unless --no-wait).
  const ready = (verb === 'up' || verb === 'apply') && options.wait === true;
  const waitTimeoutMs = readyWait(options, ready);
  // Profiles choose what starts; stop and down act on every service of the project.
  const services =
    verb === 'stop' || verb === 'down' ? target.services : activeServices(target.specs, undefined, named);
  const targets = {
    ...targetsFor(verb, services, { named, volumes: options.volumes }),
    ...pullTargets(options),
  };
  if (options.dryRun) {
    const session = await target.open();
    // stdout is the plan alone, also with --json: the notice goes to stderr.
    if (session.notice) console.error(`holos: warning: ${session.notice}`);
    const { plan } = await planSession(session, targets);
    console.log(options.json ? planJson(plan) : formatPlan(plan));
    return;
  }
  const logger = await createLogger(globals);
  const print = eventPrinter(options.json ?? false);
  const emit: Emit = (event) => {
    logger?.info(stamp(event), event.type);
    print(event);
  };
  const warn = (message: string) => emit({ type: 'warning', message });
  const name = target.layout.project;
  const lock = await acquireLock(target.layout.lock, name, {
    noWait: options.wait === false,
    timeoutMs: durationOption(options.lockTimeout, '--lock-timeout'),
    onWait: (pid) =>
      emit({
        type: 'waiting',
        message: `waiting for holos (pid ${pid}) to finish changing project ${name}; --no-wait fails instead`,
      }),
  });
  const stopped =
    verb === 'stop' ? true : verb === 'start' || verb === 'up' || verb === 'apply' ? false : undefined;
  const table = (verb === 'up' || verb === 'apply') && !options.json;
  let converged: Converged;
  let layout: ProjectLayout;
  try {
    // Under the lock: the record read here is the one the holos we waited for left behind.
    const session = await target.open();
    layout = session.layout;
    if (session.notice) warn(session.notice);
    converged = await converge(session, targets, {
      emit,
      warn,
      signal: timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs),
      healthBypass: process.env.HOLOS_HEALTH_BYPASS === '1',
      ...(stopped !== undefined && {
        record: { services: named.length > 0 ? named : services, stopped },
      }),
    });
    if (verb === 'down') await forgetProject(session.layout, options.volumes ?? false);
    // Still under the lock, so the table shows what this apply left, not another's half-work.
    if (table && !ready) console.log(statusTable(await statusAfter(session.layout, converged), false));
  } finally {
    await lock.release();
  }
  if (!ready) return;
  // Waiting changes nothing: another holos may change the project meanwhile (`holos stop`).
  const problems = await waitUntilReady(layout, [...converged.planned.desired.specs.instance.keys()], {
    emit,
    ...(waitTimeoutMs !== undefined && { timeoutMs: waitTimeoutMs }),
  });
  if (table) console.log(statusTable(await projectStatus(layout), false));
  if (problems.length > 0) throw new UserError(problems.join('\n'));
}

/** `--wait-timeout`, checked before anything changes; it means nothing without `--wait`. */
function readyWait(options: MutateOptions, ready: boolean): number | undefined {
  if (options.waitTimeout !== undefined && !ready)
    throw new UserError(`--wait-timeout ${options.waitTimeout} needs --wait: add it, or drop --wait-timeout`);
  return durationOption(options.waitTimeout, '--wait-timeout');
}

/** The instances after an apply: when it changed nothing, as its plan observed them. */
const statusAfter = (layout: ProjectLayout, { plan, planned }: Converged) =>
  plan.actions.length > 0 ? projectStatus(layout) : observedStatus(layout, planned.observed.instance);

export async function plan(
  globals: GlobalOptions,
  options: { json?: boolean; detailedExitcode?: boolean; pull?: string; locked?: boolean },
) {
  const session = await openProject(stateDirOf(globals), {
    cwd: process.cwd(),
    files: globals.file,
    projectName: globals.projectName,
  });
  if (session.notice) console.error(`holos: warning: ${session.notice}`);
  const services = activeServicesOf(session.project);
  const { plan } = await planSession(session, { ...targetsFor('plan', services), ...pullTargets(options) });
  console.log(options.json ? planJson(plan) : formatPlan(plan));
  if (options.detailedExitcode && plan.actions.length > 0) process.exitCode = 2;
}

export async function ps(g: GlobalOptions, options: { all?: boolean; format: string }): Promise<void> {
  if (options.format !== 'table' && options.format !== 'json')
    throw new UserError(`--format ${options.format}: use table or json`);
  const stateDir = stateDirOf(g);
  let projects: string[];
  if (options.all) projects = await projectsIn(stateDir);
  else {
    let files: string[] | undefined;
    try {
      files = findComposeFiles(process.cwd(), g.file);
    } catch (error) {
      if (g.file?.length || g.projectName) throw error;
    }
    if (files || g.projectName) {
      projects = [
        g.projectName && !files
          ? g.projectName
          : (await openProject(stateDir, { cwd: process.cwd(), files, projectName: g.projectName })).project
              .name,
      ];
    } else projects = await projectsIn(stateDir);
  }
  const rows = (await Promise.all(projects.map((p) => projectStatus(projectLayout(stateDir, p))))).flat();
  if (options.format === 'json') console.log(JSON.stringify({ schema_version: 1, instances: rows }));
  else console.log(statusTable(rows, projects.length > 1 || options.all === true));
}
