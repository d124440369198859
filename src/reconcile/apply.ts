import { availableParallelism } from 'node:os';
import PQueue from 'p-queue';
import { UserError } from '../errors.js';
import { QmpClient } from '../observe/qmp.js';
import type { Accelerator } from '../qemu/argv.js';
import type { QemuBinaries } from '../qemu/binaries.js';
import * as image from '../resources/image.js';
import * as instance from '../resources/instance.js';
import * as keypair from '../resources/keypair.js';
import * as overlay from '../resources/overlay.js';
import * as seed from '../resources/seed.js';
import type { Action } from '../resources/types.js';
import * as volume from '../resources/volume.js';
import { waitHealthy } from '../ssh/health.js';
import { readJson } from '../util/fs.js';
import { hostKeySpec, type Desired } from './desired.js';
import type { Emit } from './events.js';
import type { Observed } from './observe.js';
import { isCleanup, isPreparation, type Plan } from './plan.js';

// Apply: run a plan's actions with idempotent executors. Instances start in depends_on order
// (a service waits for its dependencies to run and, with a healthcheck, to be healthy), in
// parallel otherwise; stops and removals go first, in reverse order.

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
}

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

/** Keys, images and volumes: what instances need before any of them is touched. */
export async function applyPreparation(actions: Action[], ctx: ApplyContext): Promise<void> {
  const { desired } = ctx;
  for (const action of actions.filter(isPreparation)) {
    await timed(ctx.emit, action, async () => {
      if (action.kind === 'keypair') {
        const spec = action.instance
          ? hostKeySpec(action.instance, desired.layout.instance(action.instance).hostKey)
          : desired.keypair;
        await keypair.generate(spec);
      } else if (action.kind === 'image') {
        await image.pull([...desired.images.values()].find((i) => i.ref === action.name)!);
      } else {
        await volume.create(
          desired.volumes.find((v) => v.name === action.name)!,
          ctx.qemu.img,
        );
      }
    });
  }
}

/** Volume removals (`down --volumes`), after every instance that held them is gone. */
export async function applyCleanup(actions: Action[], ctx: ApplyContext): Promise<void> {
  for (const action of actions.filter(isCleanup))
    await timed(ctx.emit, action, () => volume.remove(ctx.desired.layout, action.name));
}

const stopsFirst = new Set(['stop', 'remove', 'restart', 'recreate']);

/** Runs the overlay, seed and process actions of one instance, in that order. */
async function applyInstance(name: string, actions: Action[], ctx: ApplyContext): Promise<void> {
  const { desired, observed, emit } = ctx;
  const d = desired.instances.find((i) => i.resolved.name === name);
  const layout = desired.layout.instance(name);
  const seen = observed.instances[name] ?? observed.strays[name] ?? {};
  const main = actions.find((a) => a.kind === 'instance');
  const grace = d?.spec.stop_grace_period ?? seen.applied?.spec.stop_grace_period ?? 30_000;
  const step = (message: string) => emit({ type: 'step', instance: name, message });

  const steps = async () => {
    if (main && stopsFirst.has(main.verb) && seen.pid !== undefined)
      await instance.stop(layout, seen, grace, step);
    if (main?.verb === 'remove') return instance.remove(layout);
    for (const action of actions.filter((a) => a.kind === 'overlay' || a.kind === 'seed'))
      await timed(emit, action, () =>
        action.kind === 'seed'
          ? seed.write(d!.seed)
          : action.verb === 'rebase'
            ? overlay.rebase(d!.overlay, ctx.qemu.img)
            : overlay.create(d!.overlay, ctx.qemu.img),
      );
    if (!main || !d) return;
    if (main.verb === 'resume') return resume(layout.qmpSocket);
    if (main.verb === 'record')
      return instance.writeRecord(layout, { ...seen.applied!, spec: instance.normalise(d.spec) });
    if (main.verb === 'stop') return;
    const hostKey = await keypair.read(d.hostKey);
    if (!hostKey) throw new Error(`${name}: its host key is missing`);
    // A seed deleted by hand is written again: QEMU needs it to start.
    if (!(await seed.observe(d.seed)).exists) await seed.write(d.seed);
    await instance.start({
      project: desired.project,
      instance: d.resolved,
      spec: d.spec,
      layout,
      seedPath: d.seed.path,
      volumeFiles: Object.fromEntries(desired.volumes.map((v) => [v.name, v.path])),
      accel: await ctx.accel(),
      qemu: ctx.qemu.system,
      hostPublicKey: hostKey.publicKey,
      previous: seen.applied,
    });
  };
  if (main) await timed(emit, main, steps);
  else await steps();
}

async function resume(qmpSocket: string): Promise<void> {
  const qmp = await QmpClient.connect(qmpSocket, { timeoutMs: 5_000 });
  try {
    await qmp.execute('cont');
  } finally {
    qmp.close();
  }
}

interface Failure {
  instance: string;
  error: Error;
}

/** Runs every instance action of the plan; fails with one line per instance that failed. */
export async function applyInstances(plan: Plan, ctx: ApplyContext): Promise<void> {
  const { project } = ctx.desired;
  const groups = new Map<string, Action[]>();
  for (const action of plan.actions.filter((a) => !isPreparation(a) && !isCleanup(a)))
    groups.set(action.instance!, [...(groups.get(action.instance!) ?? []), action]);
  const queue = new PQueue({ concurrency: Math.max(4, availableParallelism() * 2) });
  const failures: Failure[] = [];
  const run = (name: string) =>
    queue
      .add(() => applyInstance(name, groups.get(name)!, ctx))
      .catch((error: unknown) => {
        failures.push({ instance: name, error: error as Error });
        throw error;
      });
  const mainVerb = (name: string) => groups.get(name)!.find((a) => a.kind === 'instance')?.verb;
  const levelOf = (service: string | undefined) =>
    project.levels.findIndex((level) => level.includes(service ?? ''));
  const serviceOf = (name: string) => groups.get(name)![0]!.service;

  // Teardown: by level, last level first (services no longer in the file count as last).
  const teardown = [...groups.keys()].filter((n) => mainVerb(n) === 'stop' || mainVerb(n) === 'remove');
  const levels = [...new Set(teardown.map((n) => levelOf(serviceOf(n))))].sort((a, b) =>
    a === -1 ? -1 : b === -1 ? 1 : b - a,
  );
  for (const level of levels)
    await Promise.allSettled(teardown.filter((n) => levelOf(serviceOf(n)) === level).map(run));

  // Bring-up: each service once its dependencies are up (and healthy, if they have a check).
  const bringUp = [...groups.keys()].filter((n) => !teardown.includes(n));
  const ready = new Map<string, Promise<void>>();
  const healthy = new Map<string, Promise<void>>();
  const gate = (service: string) => {
    if (!healthy.has(service))
      healthy.set(
        service,
        serviceReady(service).then(
          () =>
            healthGate(service, ctx).catch((error: unknown) => {
              failures.push({ instance: service, error: error as Error });
              throw error;
            }),
          (error: unknown) => Promise.reject(error as Error),
        ),
      );
    return healthy.get(service)!;
  };
  const serviceReady = (service: string): Promise<void> => {
    if (!ready.has(service)) {
      const spec = project.services.find((s) => s.name === service)!.spec;
      ready.set(
        service,
        (async () => {
          const deps = await Promise.allSettled(spec.depends_on.map(gate));
          const failed = spec.depends_on.filter((_, i) => deps[i]!.status === 'rejected');
          const mine = bringUp.filter((n) => serviceOf(n) === service);
          if (failed.length > 0) {
            const error = new Error(`not started: ${failed.join(', ')} did not come up`);
            for (const name of mine) failures.push({ instance: name, error });
            throw error;
          }
          const results = await Promise.allSettled(mine.map(run));
          if (results.some((r) => r.status === 'rejected')) throw new Error(`${service} did not start`);
        })(),
      );
    }
    return ready.get(service)!;
  };
  const services = [...new Set(bringUp.map(serviceOf))].filter((s): s is string => s !== undefined);
  await Promise.allSettled(services.map(serviceReady));
  // A service others depend on comes back healthy even when none of them has work to do
  // (db restarted alone): the gate runs once per service, failures recorded by it.
  const dependedOn = services.filter((s) => project.services.some((o) => o.spec.depends_on.includes(s)));
  await Promise.allSettled(dependedOn.map(gate));
  await queue.onIdle();
  if (failures.length > 0)
    throw new UserError(failures.map((f) => `${f.instance}: ${f.error.message}`).join('\n'));
}

/** Waits until every instance of `service` passes its healthcheck (if it has one). */
async function healthGate(service: string, ctx: ApplyContext): Promise<void> {
  const { project, layout } = ctx.desired;
  const spec = project.services.find((s) => s.name === service)!.spec;
  const check = spec.healthcheck;
  if (!check) return;
  if (ctx.healthBypass) {
    ctx.emit({ type: 'health', phase: 'bypassed', service });
    return;
  }
  const projectKey = await keypair.read(ctx.desired.keypair);
  if (!projectKey) throw new Error(`${service}: the project key is missing`);
  await Promise.all(
    ctx.desired.instances
      .filter((d) => d.service.name === service)
      .map(async (d) => {
        const name = d.resolved.name;
        const applied = await readJson<instance.AppliedRecord>(layout.instance(name).applied);
        if (!applied) throw new Error(`${name} is not running`);
        const started = Date.now();
        ctx.emit({ type: 'health', phase: 'waiting', service, instance: name });
        const target = {
          port: applied.sshPort,
          username: d.spec.user,
          privateKey: projectKey.privateKey,
          hostPublicKey: applied.hostPublicKey,
        };
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
      }),
  );
}
