import { loadCompose, type LoadedCompose } from '../compose/load.js';
import { resolveProject, type ResolvedProject } from '../compose/resolve.js';
import type { Accelerator } from '../qemu/argv.js';
import { chooseAccelerator } from '../qemu/accel.js';
import { qemuBinaries } from '../qemu/binaries.js';
import { projectLayout, type ProjectLayout } from '../resources/layout.js';
import { desiredState, type Desired } from './desired.js';
import type { Emit } from './events.js';
import { observeKeys, observeState, type Observed } from './observe.js';
import { isPreparation, plan, type Plan, type Targets } from './plan.js';
import { checkIdentity, compareFiles } from './identity.js';
import { readProjectRecord, writeProjectRecord } from './project.js';

// The pipeline of DESIGN.md §1 for one project: load → resolve → observe → plan → apply.

export interface Session {
  project: ResolvedProject;
  layout: ProjectLayout;
  /** Said once to the user: the project was adopted from a file that moved, or taken over. */
  notice?: string;
}

export interface OpenOptions {
  cwd: string;
  file?: string;
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
  return { project: resolveProject(loaded, previous?.allocation), layout, ...(notice && { notice }) };
}

/** Loads and resolves the compose file, keeping the addresses handed out before. */
export async function openProject(stateDir: string, options: OpenOptions): Promise<Session> {
  return openLoaded(stateDir, loadCompose(options), options);
}

export interface Planned {
  desired: Desired;
  observed: Observed;
  plan: Plan;
}

export async function planSession(session: Session, targets: Targets): Promise<Planned> {
  const keys = await observeKeys(session.project, session.layout);
  const desired = desiredState(session.project, session.layout, keys);
  const observed = await observeState(desired);
  return { desired, observed, plan: plan(desired, observed, targets) };
}

export interface ConvergeOptions {
  emit: Emit;
  warn: (message: string) => void;
  signal?: AbortSignal;
  healthBypass?: boolean;
  /** Services the user stopped or started by name, for the project record (see watch). */
  record?: { services: string[]; stopped: boolean };
  /** Instances to leave alone this time (watch's per-instance backoff). */
  defer?: (instance: string) => boolean;
}

/** Plans and applies until the plan is carried out; returns the plan that was applied. */
export async function converge(session: Session, targets: Targets, opts: ConvergeOptions): Promise<Plan> {
  const qemu = qemuBinaries();
  let accel: Promise<Accelerator> | undefined;
  const context = (planned: Planned) => ({
    desired: planned.desired,
    observed: planned.observed,
    qemu,
    accel: () => (accel ??= chooseAccelerator(qemu.system, session.layout.stateDir, opts.warn)),
    emit: opts.emit,
    signal: opts.signal,
    healthBypass: opts.healthBypass,
  });
  const held = (p: Plan): Plan =>
    opts.defer ? { ...p, actions: p.actions.filter((a) => !(a.instance && opts.defer!(a.instance))) } : p;
  // Loaded here, not at the top: `plan` and `--dry-run` never need the executors.
  const { applyCleanup, applyInstances, applyPreparation } = await import('./apply.js');
  let planned = await planSession(session, targets);
  const first = held(planned.plan);
  if (session.project.file) await writeProjectRecord(session.layout, session.project, opts.record);
  opts.emit({ type: 'plan', project: first.project, actions: first.actions.length });
  if (first.actions.length === 0) return first;
  if (first.actions.some(isPreparation)) {
    await applyPreparation(first.actions, context(planned));
    // Keys made, volumes created: plan again so seeds render with the real keys.
    planned = await planSession(session, targets);
  }
  await applyInstances(held(planned.plan), context(planned));
  await applyCleanup(planned.plan.actions, context(planned));
  return first;
}
