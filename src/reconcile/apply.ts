import PQueue from 'p-queue';
import { UserError } from '../errors.js';
import type { Accelerator } from '../qemu/argv.js';
import type { QemuBinaries } from '../qemu/binaries.js';
import { projectKeySpec, read as readKeypair } from '../resources/keypair.js';
import type { Action, ExecContext, Executor } from '../resources/kind.js';
import { kinds } from '../resources/registry.js';
import { waitCompleted } from '../ssh/completion.js';
import type { SshTarget } from '../ssh/exec.js';
import { waitHealthy } from '../ssh/health.js';
import { inspect } from '../state/inspect.js';
import { sshTargetOf } from '../state/records.js';
import type { Desired } from './desired.js';
import type { Emit } from '../events.js';
import type { Observed } from './observe.js';
import type { Gate, Plan } from './plan.js';

// Apply: a small walker over the plan's graph (after docker compose's plan executor). A node
// runs once every node it waits for is done, in parallel otherwise; an action's executor is its
// kind's for its verb. A node whose prerequisite failed is held, not run. The walker decides no
// order of its own: that is the plan's.

export interface ApplyContext {
  desired: Desired;
  observed: Observed;
  qemu: QemuBinaries;
  /** The accelerator, probed at most once per run and only if something starts. */
  accel: () => Promise<Accelerator>;
  emit: Emit;
  signal?: AbortSignal;
  /** HOLOS_HEALTH_BYPASS=1: gates pass without probing. */
  healthBypass?: boolean;
  /** How many QEMUs start at once (default: startLimit()). */
  startLimit?: number;
}

/** What became of one instance's actions. `terminal`: only the user can fix it (a UserError). */
export type InstanceResult =
  | { status: 'ok' }
  | { status: 'failed'; error: Error; terminal: boolean }
  | { status: 'held'; reason: string };

export interface ApplyResult {
  /** Per instance that had an action in the plan. */
  instances: Map<string, InstanceResult>;
  /** One line per failed or held node, naming its subject once: `web-0: QEMU did not start: …`. */
  problems: string[];
}

/**
 * How many QEMUs may start at once: HOLOS_START_LIMIT (like docker compose's
 * COMPOSE_PARALLEL_LIMIT, but for starts only), else no limit. A start is mostly waiting for
 * QEMU to set up and daemonize: on a 2-core TCG host, 50 held VMs came up in 0.89× the time
 * without the old cap of 4 (docs/bench.md). The setting is for a host where many QEMUs
 * starting together hurt (little memory, a slow disk).
 */
export function startLimit(env: NodeJS.ProcessEnv = process.env): number {
  const given = env.HOLOS_START_LIMIT;
  if (given === undefined || given === '') return Infinity;
  const limit = Number(given);
  if (!Number.isInteger(limit) || limit < 1)
    throw new UserError(`HOLOS_START_LIMIT=${given}: give a whole number of 1 or more`);
  return limit;
}

type Node = { action: Action; gate?: undefined } | { gate: Gate; action?: undefined };
const idOf = (node: Node) => node.action?.id ?? node.gate!.id;
const afterOf = (node: Node) => node.action?.after ?? node.gate!.after;

/** `web-0`, `volume data`, `db` (a gate): what a problem line names. */
const subjectOf = (node: Node) =>
  node.gate
    ? node.gate.service
    : node.action.kind === 'instance'
      ? node.action.name
      : `${node.action.kind} ${node.action.name}`;

async function timed(emit: Emit, action: Action, run: () => Promise<void>): Promise<void> {
  const started = Date.now();
  emit({ type: 'action', phase: 'start', action });
  try {
    await run();
  } catch (error) {
    emit({
      type: 'action',
      phase: 'failed',
      action,
      duration_ms: Date.now() - started,
      error: (error as Error).message,
    });
    throw error;
  }
  emit({ type: 'action', phase: 'done', action, duration_ms: Date.now() - started });
}

export async function apply(plan: Plan, ctx: ApplyContext): Promise<ApplyResult> {
  const { desired, observed, emit } = ctx;
  const parts = new Map<string, Action[]>();
  for (const action of plan.actions)
    if (action.during) parts.set(action.during, [...(parts.get(action.during) ?? []), action]);
  const nodes: Node[] = [
    ...plan.actions.filter((a) => !a.during).map((action) => ({ action })),
    ...plan.gates.map((gate) => ({ gate })),
  ];
  const byId = new Map(nodes.map((node) => [idOf(node), node]));
  const outcome = new Map<string, { ok: true } | { ok: false; why: string; error?: Error }>();
  // Only QEMU start-ups share the slots (ExecContext.startSlot); every other node, a stop above
  // all (ACPI, then the grace period), runs as soon as what it waits for is done.
  const startSlots = new PQueue({ concurrency: ctx.startLimit ?? startLimit() });

  const execute = (action: Action, between: () => Promise<void>): Promise<void> => {
    const kind = kinds[action.kind];
    const executor = kind.execute[action.verb] as Executor<unknown, unknown> | undefined;
    if (!executor) throw new Error(`no executor for ${action.kind} ${action.verb}`);
    const execCtx: ExecContext = {
      layout: desired.layout,
      project: desired.project,
      qemu: ctx.qemu,
      accel: ctx.accel,
      emit,
      step: (message) => emit({ type: 'step', instance: action.instance ?? action.name, message }),
      signal: ctx.signal,
      spec: (k, name) => desired.specs[k].get(name),
      between,
      startSlot: (run) => startSlots.add(run),
    };
    const spec = (desired.specs[action.kind] as Map<string, unknown>).get(action.name);
    const seen = (observed[action.kind] as Record<string, unknown>)[action.name];
    return timed(emit, action, () => executor({ action, spec, observed: seen }, execCtx));
  };

  const runNode = async (node: Node): Promise<void> => {
    if (node.gate)
      return node.gate.kind === 'health'
        ? healthGate(node.gate.service, ctx)
        : completionGate(node.gate.service, ctx);
    const mine = parts.get(node.action.id) ?? [];
    let ran = false;
    const between = async () => {
      if (ran) return;
      ran = true;
      for (const part of mine) await execute(part, () => Promise.resolve());
    };
    await execute(node.action, between);
    await between(); // an executor that never stops its VM still gets its parts made
  };

  // Each node once, when everything it waits for has settled; held when any of that failed.
  const settled = new Map<string, Promise<void>>();
  const visit = (node: Node): Promise<void> => {
    const id = idOf(node);
    let done = settled.get(id);
    if (!done) {
      done = (async () => {
        // A node the plan does not hold (an instance watch holds back) is not waited for.
        const before = afterOf(node).filter((dep) => byId.has(dep));
        await Promise.all(before.map((dep) => visit(byId.get(dep)!)));
        const blocked = before.filter((dep) => !outcome.get(dep)!.ok);
        if (blocked.length > 0) {
          const names = [...new Set(blocked.map((dep) => subjectOf(byId.get(dep)!)))];
          outcome.set(id, { ok: false, why: `not started: ${names.join(', ')} did not come up` });
          return;
        }
        if (ctx.signal?.aborted) {
          outcome.set(id, { ok: false, why: `not started: ${(ctx.signal.reason as Error).message}` });
          return;
        }
        try {
          await runNode(node);
          outcome.set(id, { ok: true });
        } catch (error) {
          outcome.set(id, { ok: false, why: (error as Error).message, error: error as Error });
        }
      })();
      settled.set(id, done);
    }
    return done;
  };
  await Promise.all(nodes.map(visit));

  const instances = new Map<string, InstanceResult>();
  const problems: string[] = [];
  for (const node of nodes) {
    const result = outcome.get(idOf(node))!;
    if (!result.ok) problems.push(`${subjectOf(node)}: ${result.why}`);
    const instance = node.action?.instance;
    if (instance === undefined || instances.get(instance)?.status === 'failed') continue;
    instances.set(
      instance,
      result.ok
        ? (instances.get(instance) ?? { status: 'ok' })
        : result.error
          ? { status: 'failed', error: result.error, terminal: result.error instanceof UserError }
          : { status: 'held', reason: result.why },
    );
  }
  return { instances, problems };
}

/** Runs `each` for every instance of `service` with its SSH target; each must be running. */
async function everyInstance(
  service: string,
  ctx: ApplyContext,
  each: (name: string, target: SshTarget) => Promise<void>,
): Promise<void> {
  const { project, layout } = ctx.desired;
  const projectKey = await readKeypair(projectKeySpec(layout));
  if (!projectKey) throw new Error('the project key is missing');
  await Promise.all(
    project.instances
      .filter((i) => i.service === service)
      .map(async ({ name }) => {
        const { applied, pid } = await inspect(name, layout.instance(name));
        if (!applied || pid === undefined) throw new Error(`${name} is not running`);
        await each(name, sshTargetOf(applied, projectKey.privateKey));
      }),
  );
}

/** Waits until every instance of `service` passes its healthcheck. */
async function healthGate(service: string, ctx: ApplyContext): Promise<void> {
  const check = ctx.desired.project.services.find((s) => s.name === service)!.spec.healthcheck!;
  if (ctx.healthBypass) {
    ctx.emit({ type: 'health', phase: 'bypassed', service });
    return;
  }
  await everyInstance(service, ctx, async (name, target) => {
    const started = Date.now();
    ctx.emit({ type: 'health', phase: 'waiting', service, instance: name });
    try {
      await waitHealthy(target, check, {
        signal: ctx.signal,
        onProbe: (result) =>
          ctx.emit({
            type: 'health',
            phase: 'probe-failed',
            service,
            instance: name,
            output: result.output,
          }),
      });
    } catch (error) {
      ctx.emit({
        type: 'health',
        phase: 'unhealthy',
        service,
        instance: name,
        output: (error as Error).message,
      });
      throw new Error(`${name} healthcheck: ${(error as Error).message}`, { cause: error });
    }
    ctx.emit({
      type: 'health',
      phase: 'healthy',
      service,
      instance: name,
      duration_ms: Date.now() - started,
    });
  });
}

/** Waits until the main service of every instance of `service` has exited 0. */
async function completionGate(service: string, ctx: ApplyContext): Promise<void> {
  await everyInstance(service, ctx, async (name, target) => {
    const started = Date.now();
    ctx.emit({ type: 'completion', phase: 'waiting', service, instance: name });
    try {
      await waitCompleted(target, { signal: ctx.signal });
    } catch (error) {
      const why = (error as Error).message;
      ctx.emit({ type: 'completion', phase: 'failed', service, instance: name, output: why });
      throw new Error(`${name}: ${why}; see holos logs ${name}`, { cause: error });
    }
    ctx.emit({
      type: 'completion',
      phase: 'completed',
      service,
      instance: name,
      duration_ms: Date.now() - started,
    });
  });
}
