import * as image from '../resources/image.js';
import * as instance from '../resources/instance.js';
import * as keypair from '../resources/keypair.js';
import * as overlay from '../resources/overlay.js';
import * as seed from '../resources/seed.js';
import type { Action, Target } from '../resources/types.js';
import * as volume from '../resources/volume.js';
import type { Desired } from './desired.js';
import type { Observed } from './observe.js';

// The plan: desired × observed × target → ordered actions, each with its reason. Pure.

export interface Targets {
  /** The target of each service the verb acts on; services not named are left alone. */
  services: Record<string, Target>;
  /** Instances on disk that the file no longer names (removed services, lower replicas). */
  strays?: Target;
  /** `start`: only instances that were created before; nothing new is made. */
  existingOnly?: boolean;
  /** `down --volumes`: the project's named volumes go too, once its instances are gone. */
  removeVolumes?: boolean;
}

export interface Plan {
  schema_version: 1;
  project: string;
  actions: Action[];
}

/** Actions that make or fetch what instances need; apply runs them first, then plans again. */
export const isPreparation = (a: Action) =>
  a.kind === 'keypair' || a.kind === 'image' || (a.kind === 'volume' && a.verb !== 'remove');

/** Actions that run once every instance action is done: removing volumes no VM holds any more. */
export const isCleanup = (a: Action) => a.kind === 'volume' && a.verb === 'remove';

const rebuilds = new Set(['create', 'recreate']);

/**
 * Down with no process and no record: an `up` that failed before QEMU started still left the
 * instance's directory (host key, disk, seed), which must go too, or the project never does.
 */
function leftBehind(d: Desired['instances'][number], observed: Observed, target: Target): Action | undefined {
  const name = d.resolved.name;
  const onDisk =
    observed.overlays[name]?.exists || observed.seeds[name]?.exists || observed.hostKeys[name]?.publicKey;
  if (target !== 'absent' || !onDisk) return undefined;
  return { kind: 'instance', name, instance: name, service: d.service.name, verb: 'remove', reason: 'down' };
}

function planInstance(d: Desired['instances'][number], observed: Observed, target: Target): Action[] {
  const name = d.resolved.name;
  const seen = observed.instances[name] ?? {};
  const disk = overlay.diff(d.overlay, observed.overlays[name] ?? { exists: false }, target);
  const main = instance.diff(d.spec, seen, target, disk) ?? leftBehind(d, observed, target);
  const keys = keypair
    .diff(d.hostKey, observed.hostKeys[name] ?? {}, target)
    .map((a) => ({ ...a, instance: name, service: d.service.name }));
  if (main && rebuilds.has(main.verb)) {
    const newDisk: Action = disk.find((a) => a.verb !== 'rebase') ?? {
      kind: 'overlay',
      name,
      instance: name,
      verb: 'recreate',
      reason: 'a new root disk, so cloud-init runs again',
    };
    const seedWrite = seed.diff(d.seed, observed.seeds[name] ?? { exists: false }, target);
    return [
      ...keys,
      { ...newDisk, service: d.service.name },
      ...seedWrite.map((a) => ({ ...a, service: d.service.name })),
      main,
    ];
  }
  const seedWrite =
    target === 'running' ? seed.diff(d.seed, observed.seeds[name] ?? { exists: false }, target) : [];
  const seedActions = seedWrite.map((a) => ({
    ...a,
    service: d.service.name,
    reason: main ? a.reason : 'the hosts table changed; the guest sees it when recreated',
  }));
  const rebase = main
    ? disk.filter((a) => a.verb === 'rebase').map((a) => ({ ...a, service: d.service.name }))
    : [];
  return [...keys, ...rebase, ...seedActions, ...(main ? [main] : [])];
}

function strayReason(desired: Desired, name: string, observed: instance.InstanceObserved): string {
  const service = observed.applied?.spec.service ?? name.replace(/-\d+$/, '');
  const kept = desired.project.services.find((s) => s.name === service);
  return kept
    ? `replicas of ${service} are now ${kept.spec.replicas}`
    : `service ${service} is no longer in the file`;
}

export function plan(desired: Desired, observed: Observed, targets: Targets): Plan {
  const actions: Action[] = [];
  const running = (service: string) => targets.services[service] === 'running';
  const anyRunning = desired.project.services.some((s) => running(s.name) && s.spec.replicas > 0);
  actions.push(...keypair.diff(desired.keypair, observed.keypair, anyRunning ? 'running' : 'stopped'));

  const images = new Map<string, Action>();
  for (const [service, spec] of desired.images)
    if (running(service) && desired.project.services.find((s) => s.name === service)!.spec.replicas > 0)
      for (const a of image.diff(spec, observed.images.get(service) ?? { exists: false }, 'running'))
        images.set(spec.path, a);
  actions.push(...images.values());

  for (const spec of desired.volumes) {
    const users = desired.project.services.filter((s) =>
      s.mounts.some((m) => m.type === 'volume' && m.source === spec.name),
    );
    const target = users.some((s) => running(s.name)) ? 'running' : 'stopped';
    actions.push(...volume.diff(spec, observed.volumes[spec.name] ?? { exists: false }, target));
  }

  for (const d of desired.instances) {
    const target = targets.services[d.service.name];
    if (!target) continue;
    if (targets.existingOnly && !observed.instances[d.resolved.name]?.applied) continue;
    actions.push(...planInstance(d, observed, target));
  }

  if (targets.strays)
    for (const [name, seen] of Object.entries(observed.strays)) {
      const live = seen.pid !== undefined;
      const service = seen.applied?.spec.service;
      const base = { kind: 'instance' as const, name, instance: name, ...(service && { service }) };
      if (targets.strays === 'absent')
        actions.push({ ...base, verb: 'remove', reason: strayReason(desired, name, seen) });
      else if (targets.strays === 'stopped' && live)
        actions.push({ ...base, verb: 'stop', reason: 'stop requested' });
    }
  if (targets.removeVolumes) actions.push(...volume.removals(observed.volumesOnDisk));
  return { schema_version: 1, project: desired.project.name, actions };
}
