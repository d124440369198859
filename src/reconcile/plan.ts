import type { PullPolicy } from '../images/pull.js';
import { dependencyNames } from '../compose/schema.js';
import {
  actionId,
  startsVm,
  type Action,
  type Change,
  type DiffContext,
  type Target,
} from '../resources/kind.js';
import { kinds } from '../resources/registry.js';
import { parseInstanceName } from '../state/inspect.js';
import type { Desired } from './desired.js';
import type { Observed } from './observe.js';

// The plan: desired × observed × targets → a graph of actions, each with its cause and reason.
// Pure. Every kind is diffed the same way (resources/kind.ts); this is the only place where
// order is decided: what instances need comes before them, an instance's parts are made while
// it is down, dependencies start first (behind a health gate when they have a healthcheck),
// and teardown runs the other way round, before anything starts.

export interface Targets {
  /** The target of each service the verb acts on; services not named are left alone. */
  services: Record<string, Target>;
  /** Instances on disk that the file no longer names (removed services, lower replicas). */
  strays?: Target;
  /** watch: instances left alone whatever their service's target (stopped by themselves, restart: no). */
  leave?: readonly string[];
  /** `start`: only instances that were created before; nothing new is made. */
  existingOnly?: boolean;
  /** `down --volumes`: the project's named volumes go too, once its instances are gone. */
  removeVolumes?: boolean;
  /**
   * `--pull`: `missing` (the default) pulls what is not cached, `always` also what upstream
   * changed (observe asked it), `never` refuses to download.
   */
  pull?: PullPolicy;
  /** `--locked`: every catalog or URL image must be pinned by holos.images.lock. */
  locked?: boolean;
}

/**
 * A node of the graph that is not an action: every instance of a service passes its healthcheck
 * (`health`), or its main service has exited 0 (`completed`, depends_on's
 * service_completed_successfully).
 */
export interface Gate {
  id: string;
  kind: 'health' | 'completed';
  service: string;
  after: string[];
}

export interface Plan {
  schema_version: 1;
  project: string;
  /** In an order that respects the graph (each action after what it waits for). */
  actions: Action[];
  gates: Gate[];
  /** What the reader should know that is no action: `a newer debian:12 is in the cache`. */
  notices: string[];
}

const bringUp = new Set<Action['verb']>(['create', 'recreate', 'start', 'restart', 'resume']);
const teardown = new Set<Action['verb']>(['stop', 'remove']);
/** Within one instance: its key, its parts (disk, seed, …) in registry order, then the instance itself. */
const partOrder: string[] = [
  ...Object.values(kinds).flatMap((k) =>
    (k as { part?: boolean }).part || k.kind === 'instance' ? [] : [k.kind],
  ),
  ...Object.values(kinds).flatMap((k) => ((k as { part?: boolean }).part ? [k.kind] : [])),
  'instance',
];

function diffAll(desired: Desired, observed: Observed, targets: Targets, notices: string[]): Change[] {
  const planned = new Map<string, Change>();
  const ctx: DiffContext = {
    targetOf: (service, instance) =>
      service === undefined ||
      (instance !== undefined && targets.existingOnly && !observed.instance[instance]?.applied) ||
      (instance !== undefined && targets.leave?.includes(instance))
        ? undefined
        : targets.services[service],
    removeVolumes: targets.removeVolumes ?? false,
    ...(targets.strays && { strays: targets.strays }),
    project: desired.project,
    spec: (kind, name) => desired.specs[kind].get(name),
    observed: (kind, name) => observed[kind][name],
    observedNames: (kind) => Object.keys(observed[kind]),
    planned: (kind, name) => planned.get(actionId(kind, name)),
    pullPolicy: targets.pull ?? 'missing',
    notice: (message) => notices.push(message),
  };
  const changes: Change[] = [];
  for (const kind of Object.values(kinds)) {
    const specs = desired.specs[kind.kind] as Map<string, unknown>;
    const seen = observed[kind.kind] as Record<string, unknown>;
    for (const name of new Set([...specs.keys(), ...Object.keys(seen)])) {
      if (!(name in seen)) throw new Error(`plan: ${kind.kind} ${name} was not observed`);
      for (const change of kind.diff(name, specs.get(name) as never, seen[name] as never, ctx)) {
        planned.set(actionId(change.kind, change.name), change);
        changes.push(change);
      }
    }
  }
  return changes;
}

/** Where an action goes in the list: preparation, then instance by instance, then cleanup. */
function orderOf(desired: Desired, observed: Observed) {
  const instances = [
    ...desired.project.instances.map((i) => i.name),
    ...Object.keys(observed.instance).filter((n) => !desired.specs.instance.has(n)),
  ];
  const kindOrder = Object.keys(kinds);
  return (a: Action): number[] => {
    if (a.instance === undefined) return teardown.has(a.verb) ? [2, 0, 0] : [0, kindOrder.indexOf(a.kind), 0];
    return [1, instances.indexOf(a.instance), partOrder.indexOf(a.kind)];
  };
}

export function plan(desired: Desired, observed: Observed, targets: Targets): Plan {
  const notices: string[] = [];
  const changes = diffAll(desired, observed, targets, notices);
  const planned = new Set(changes.map((c) => actionId(c.kind, c.name)));
  const actions: Action[] = changes.map(({ needs, ...change }) => ({
    id: actionId(change.kind, change.name),
    ...change,
    after: (needs ?? []).filter((id) => planned.has(id)),
  }));
  const byId = new Map(actions.map((a) => [a.id, a]));
  const instanceAction = (name: string) => byId.get(actionId('instance', name));

  // An instance's parts are made during its action, while the VM is down; what they wait for,
  // the instance waits for before it stops.
  for (const action of actions) {
    const owner = action.instance !== undefined ? instanceAction(action.instance) : undefined;
    const isPart = (kinds[action.kind] as { part?: boolean }).part === true;
    if (!isPart || !owner || !startsVm.has(owner.verb)) continue;
    action.during = owner.id;
    owner.after = [...new Set([...owner.after.filter((id) => id !== action.id), ...action.after])];
  }

  // Services: who depends on whom, from the file and, for instances it no longer names, from
  // what they were started with.
  const serviceOf = (a: Action) => a.service ?? parseInstanceName(a.name).service;
  const dependsOn = new Map<string, string[]>(
    desired.project.services.map((s) => [s.name, dependencyNames(s.spec)]),
  );
  for (const [name, seen] of Object.entries(observed.instance)) {
    const service = seen.applied?.spec.service ?? parseInstanceName(name).service;
    if (!dependsOn.has(service)) dependsOn.set(service, seen.applied?.spec.depends_on ?? []);
  }
  const instanceActions = actions.filter((a) => a.kind === 'instance');
  const ofService = (service: string, verbs: Set<Action['verb']>) =>
    instanceActions.filter((a) => serviceOf(a) === service && verbs.has(a.verb)).map((a) => a.id);
  const wait = (action: Action, ids: readonly string[]) => {
    action.after = [...new Set([...action.after, ...ids])];
  };

  // Teardown, last level first: a service stops once the services that depend on it have.
  const down = instanceActions.filter((a) => teardown.has(a.verb));
  for (const action of down)
    for (const [dependent, deps] of dependsOn)
      if (deps.includes(serviceOf(action))) wait(action, ofService(dependent, teardown));

  // Bring-up, after every teardown (a removed VM may hold a port a new one needs), dependencies
  // first; a dependency to be healthy or completed is passed through its gate.
  const up = instanceActions.filter((a) => bringUp.has(a.verb));
  const gates: Gate[] = [];
  for (const service of desired.project.services) {
    // What each dependent waits for: its start, its healthcheck (condition: service_healthy, or
    // the list form when it has one) or its main service's end (service_completed_successfully).
    // Nothing, when the dependency is not required and this verb leaves it alone (a profile not
    // enabled, say).
    const needs = new Map<string, 'started' | Gate['kind']>();
    const leftAlone = targets.services[service.name] === undefined;
    for (const s of desired.project.services)
      for (const d of s.spec.depends_on)
        if (d.service === service.name && (d.required || !leftAlone))
          needs.set(
            s.name,
            d.condition === 'service_completed_successfully'
              ? 'completed'
              : d.condition === 'service_started' || !service.spec.healthcheck
                ? 'started'
                : 'health',
          );
    const mine = ofService(service.name, bringUp);
    const waiting = up.filter((a) => needs.has(serviceOf(a)));
    if (needs.size === 0 || (mine.length === 0 && waiting.length === 0)) continue;
    const passed = new Map<string, string[]>([['started', mine]]);
    for (const kind of ['health', 'completed'] as const)
      if ([...needs.values()].includes(kind)) {
        const gate: Gate = { id: `${kind}:${service.name}`, kind, service: service.name, after: mine };
        gates.push(gate);
        passed.set(kind, [gate.id]);
      }
    for (const action of waiting) wait(action, passed.get(needs.get(serviceOf(action))!)!);
  }
  for (const action of up)
    wait(
      action,
      down.map((a) => a.id),
    );

  // The project's own resources (its volumes, its switch) go once every instance is done with them.
  for (const action of actions)
    if (action.instance === undefined && teardown.has(action.verb))
      wait(
        action,
        instanceActions.map((a) => a.id),
      );

  const order = orderOf(desired, observed);
  const keyed = actions.map((a, i) => ({ a, key: [...order(a), i] }));
  keyed.sort((x, y) => {
    for (let i = 0; i < x.key.length; i++) if (x.key[i] !== y.key[i]) return x.key[i]! - y.key[i]!;
    return 0;
  });
  return {
    schema_version: 1,
    project: desired.project.name,
    actions: keyed.map((k) => k.a),
    gates,
    notices,
  };
}

/**
 * The graph, one node a line with what it waits for (after docker compose's Plan.String), for
 * tests and debugging: `[keypair:shop, image:./base.qcow2] -> instance:db-0 create (missing)`;
 * an instance's parts show the action they run during: `{during instance:db-0}`.
 */
export function graphLines(plan: Plan): string[] {
  const node = (id: string, after: readonly string[], what: string) =>
    `[${[...after].sort().join(', ')}] -> ${id} ${what}`;
  return [
    ...plan.actions.map((a) =>
      node(a.id, a.after, `${a.verb} (${a.cause})${a.during ? ` {during ${a.during}}` : ''}`),
    ),
    ...plan.gates.map((g) => node(g.id, g.after, g.kind === 'health' ? 'healthy' : 'completed')),
  ];
}
