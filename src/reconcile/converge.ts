import { UserError } from '../errors.js';
import type { Accelerator } from '../qemu/argv.js';
import { chooseAccelerator } from '../qemu/accel.js';
import { qemuBinaries } from '../qemu/binaries.js';
import { desiredState, type Desired } from './desired.js';
import type { Action } from '../resources/kind.js';
import type { ApplyResult } from './apply.js';
import type { Emit } from '../events.js';
import { observeImages, observeKeys, observeState, type Observed } from './observe.js';
import { plan, type Plan, type Targets } from './plan.js';
import type { Session } from '../session.js';
import { writeProjectRecord } from '../state/project.js';
import { pinsOf } from '../resources/image.js';

// The pipeline of DESIGN.md §1 for one project, once it is loaded and resolved (session.ts):
// observe → plan → apply.

export interface Planned {
  desired: Desired;
  observed: Observed;
  plan: Plan;
}

export async function planSession(session: Session, targets: Targets): Promise<Planned> {
  const keys = await observeKeys(session.project, session.layout);
  const images = await observeImages(session.project, session.layout, {
    pins: session.imagePins,
    ...(session.imageLock && { lock: session.imageLock }),
    ...(targets.locked && { locked: true }),
    policy: targets.pull ?? 'missing',
  });
  const desired = desiredState(session.project, session.layout, keys, images);
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
  /** Instances to leave alone this time (watch's per-instance backoff), seeing what was planned. */
  defer?: (instance: string, planned: Planned) => boolean;
}

/** What one converge did: the plan it applied (what watch held back is not in it) and the outcome. */
export interface Converged {
  plan: Plan;
  planned: Planned;
  result: ApplyResult;
}

/**
 * Plans once and applies that plan: what `holos plan` prints is what happens (a seed whose keys
 * are made in this apply is rendered when it is written). Throws ApplyFailed, which carries the
 * outcome, when an action failed or was held.
 */
export async function converge(
  session: Session,
  targets: Targets,
  opts: ConvergeOptions,
): Promise<Converged> {
  const qemu = qemuBinaries();
  let accel: Promise<Accelerator> | undefined;
  const planned = await planSession(session, targets);
  const deferred = (a: Action) => a.instance !== undefined && opts.defer?.(a.instance, planned) === true;
  const applied: Plan = opts.defer
    ? { ...planned.plan, actions: planned.plan.actions.filter((a) => !deferred(a)) }
    : planned.plan;
  if (session.project.file)
    await writeProjectRecord(
      session.layout,
      session.project,
      opts.record,
      pinsOf(planned.desired.specs.image.values()),
    );
  for (const message of planned.plan.notices) opts.warn(message);
  opts.emit({ type: 'plan', project: applied.project, actions: applied.actions.length });
  if (applied.actions.length === 0)
    return { plan: applied, planned, result: { instances: new Map(), problems: [] } };
  // Loaded here, not at the top: `plan` and `--dry-run` never need the executors.
  const { apply } = await import('./apply.js');
  const result = await apply(applied, {
    desired: planned.desired,
    observed: planned.observed,
    qemu,
    accel: () => (accel ??= chooseAccelerator(qemu.system, session.layout.stateDir, opts.warn)),
    emit: opts.emit,
    signal: opts.signal,
    healthBypass: opts.healthBypass,
  });
  const converged = { plan: applied, planned, result };
  if (result.problems.length > 0) throw new ApplyFailed(converged);
  return converged;
}

/** An apply in which something failed or was held: one line per problem, naming its subject once. */
export class ApplyFailed extends UserError {
  readonly converged: Converged;
  constructor(converged: Converged) {
    super(converged.result.problems.join('\n'));
    this.converged = converged;
    this.name = 'ApplyFailed';
  }
}
