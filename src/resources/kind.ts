import type { Operation } from 'fast-json-patch';
import type { ResolvedProject } from '../compose/resolve.js';
import type { Accelerator } from '../qemu/argv.js';
import type { QemuBinaries } from '../qemu/binaries.js';
import type { Emit } from '../events.js';
import type { ProjectLayout } from '../state/layout.js';
import type { ImageInputs } from './image.js';
import type { PullPolicy } from '../images/pull.js';

// The one shape every resource kind has (DESIGN.md §3). A kind says which resources of its
// sort the project needs (`desired`, pure), what is there now (`observe`), what must change
// (`diff`, pure) and how to change it (one executor per verb). The planner (reconcile/plan.ts)
// walks the registry (registry.ts) the same way for every kind; adding a kind is a module that
// exports one `Kind` and one line in the registry.

/** What a verb asks for, per service. */
export type Target = 'running' | 'stopped' | 'absent';

export type ResourceKind =
  'keypair' | 'image' | 'volume' | 'segment' | 'overlay' | 'seed' | 'nvram' | 'instance';

export type Verb =
  | 'generate'
  | 'pull'
  | 'create'
  | 'recreate'
  | 'rebase'
  | 'resize'
  | 'write'
  | 'start'
  | 'restart'
  | 'resume'
  | 'update'
  | 'stop'
  | 'remove'
  | 'record';

/** The verbs of an instance that boot its VM (from its disk and seed): its parts are made during them. */
export const startsVm: ReadonlySet<Verb> = new Set<Verb>(['create', 'recreate', 'start', 'restart']);

/**
 * Why an action is in the plan, for machines (the human reason says the same in words).
 * After Terraform's ActionReason: one value per kind of cause, never free text.
 */
export type Cause =
  /** Nothing there yet (a key, an image, a volume, a disk, a seed, a new instance). */
  | 'missing'
  /** The file changed a field of the resource; `forced_by` names the fields. */
  | 'changed'
  /** Part of an instance that gets a new root disk. */
  | 'replaced'
  /** The host drifted from what holos made: QEMU exited, a paused or dead guest, a disk on another base. */
  | 'drift'
  /** The base image is the same file at another path: the disk is rebased. */
  | 'moved'
  /** Its QEMU stopped during the disk's first boot: the guest is made again on a new disk. */
  | 'interrupted'
  /** A key the guest was given is gone or different: the guest must be made again. */
  | 'key-changed'
  /** Only the seed's hosts table changed: no VM action, the guest sees it when recreated. */
  | 'hosts-changed'
  /** The verb asked for it: stop, start, down. */
  | 'requested'
  /** Not in the file any more: a removed service, a replica beyond `replicas`. */
  | 'not-in-file'
  /** Recorded or named by an older holos: the record or the seed is rewritten in the current form. */
  | 'upgraded'
  /** `--pull always`: upstream serves a build the cache does not have. */
  | 'upstream';

/**
 * One step of a plan: a node of its graph. Plans are data: printed, serialised for
 * `plan --json`, then walked by apply (reconcile/apply.ts), which emits events naming the same ids.
 */
export interface Action {
  /** `<kind>:<name>`, the same in `plan --json` and in the events of the apply that follows. */
  id: string;
  kind: ResourceKind;
  /** The resource's name: the project, a volume, an image ref or an instance. With `kind`, it
   * is the typed reference to the action's spec (`Desired.specs[kind].get(name)`). */
  name: string;
  verb: Verb;
  cause: Cause;
  /** Why, in words a user reads in the plan. */
  reason: string;
  /** Ids of the actions and gates this one waits for. */
  after: string[];
  /**
   * The instance action this one runs inside of: its parts (a new disk, a rebase, a seed)
   * are made while its VM is down, after the old QEMU stopped and before the new one starts.
   */
  during?: string;
  /** Set for every action on an instance's key, overlay, seed or process. */
  instance?: string;
  service?: string;
  /** For changes: the fields that forced the action (`vm.memory_mb`, `ports`). */
  forced_by?: string[];
  /** For changes: RFC 6902 operations from the applied spec to the desired one. */
  patch?: Operation[];
}

/** What a kind's diff says must happen; the planner adds the id and the edges. */
export type Change = Omit<Action, 'id' | 'after' | 'during'> & {
  /**
   * Ids of resources this change needs first, whether or not they have actions in this plan
   * (`image:debian:12`, `keypair:demo`): the planner keeps the ones that do.
   */
  needs?: string[];
};

export const actionId = (kind: ResourceKind, name: string) => `${kind}:${name}`;

/**
 * The inputs of `desired`: the resolved project, the public keys that exist now and what the
 * image cache holds (which version of each image the project uses is decided from it).
 */
export interface DesiredInput {
  project: ResolvedProject;
  layout: ProjectLayout;
  keys: Keys;
  images?: ImageInputs;
}

/** The keys on the host that seeds are rendered with (a missing one is made by the apply). */
export interface Keys {
  /** The project's public key. */
  project?: string;
  /** Each instance's host key pair (the seed carries the private half), by instance name. */
  hosts: Record<string, { privateKey: string; publicKey: string } | undefined>;
}

/** Pure lookups a diff may make into the other kinds' specs and observations. */
export interface DiffContext {
  /**
   * The target of a service (undefined: the verb leaves it alone). Given one of its instances,
   * also undefined when the verb acts on existing instances only (`start`) and this one was
   * never started: nothing of it is made.
   */
  targetOf(service: string | undefined, instance?: string): Target | undefined;
  /** `down --volumes`. */
  removeVolumes: boolean;
  /** The target of instances on the host that the file does not name (undefined: left alone). */
  strays?: Target;
  project: ResolvedProject;
  spec<K extends ResourceKind>(kind: K, name: string): SpecOf<K> | undefined;
  observed<K extends ResourceKind>(kind: K, name: string): ObservedOf<K> | undefined;
  /** The names of every resource of a kind observed: the file's, and those on the host it no longer names. */
  observedNames(kind: ResourceKind): string[];
  /** The change already planned for a resource of a kind diffed earlier (registry order). */
  planned(kind: ResourceKind, name: string): Change | undefined;
  /** `--pull`: whether a missing image may be downloaded. */
  pullPolicy: PullPolicy;
  /** Something the plan's reader should know that is no action (a newer image is cached). */
  notice(message: string): void;
}

/** What an executor may use besides its own spec and observation. */
export interface ExecContext {
  layout: ProjectLayout;
  project: ResolvedProject;
  qemu: QemuBinaries;
  /** The accelerator, probed at most once per run and only if something starts. */
  accel: () => Promise<Accelerator>;
  emit: Emit;
  /** A progress line of this action (`ACPI shutdown requested`). */
  step: (message: string) => void;
  signal?: AbortSignal;
  /** The spec of another resource of the project (an instance's seed, to write it again). */
  spec<K extends ResourceKind>(kind: K, name: string): SpecOf<K> | undefined;
  /** Runs the actions that are `during` this one (an instance's new disk and seed): call it
   * once, when the VM is down and before it starts again. */
  between: () => Promise<void>;
  /**
   * Runs a QEMU start-up once one of the apply's start slots is free (apply.ts). Only the
   * start-up takes a slot: the stop before it, a disk, a seed and a health gate are mostly
   * waiting, and run unthrottled.
   */
  startSlot: <T>(run: () => Promise<T>) => Promise<T>;
}

export interface ExecInput<S, O> {
  action: Action;
  /** Undefined for a resource the file no longer names (a stray instance, an old volume). */
  spec: S | undefined;
  observed: O;
}

export type Executor<S, O> = (input: ExecInput<S, O>, ctx: ExecContext) => Promise<void>;

export interface Kind<K extends ResourceKind, S, O> {
  readonly kind: K;
  /**
   * Its resources are parts of an instance (the overlay, the seed): when the instance has an
   * action that starts its VM, they are made `during` it, while the VM is down.
   */
  readonly part?: boolean;
  /** The specs of this kind the project needs, by name. Pure. */
  desired(input: DesiredInput): Map<string, S>;
  /** Resources of this kind on the host that the file may no longer name, for their removal. */
  onHost?(layout: ProjectLayout): Promise<string[]>;
  /** What is there now for the resource `name` (its spec when the file names it). */
  observe(name: string, spec: S | undefined, layout: ProjectLayout): Promise<O>;
  /** What must change for the resource `name`. Pure. */
  diff(name: string, spec: S | undefined, observed: O, ctx: DiffContext): Change[];
  /** One executor per verb this kind plans. */
  execute: Partial<Record<Verb, Executor<S, O>>>;
}

// The spec and observation types of each kind, from the registry.
type Registry = typeof import('./registry.js').kinds;
export type SpecOf<K extends ResourceKind> = Registry[K] extends Kind<K, infer S, infer _O> ? S : never;
export type ObservedOf<K extends ResourceKind> = Registry[K] extends Kind<K, infer _S, infer O> ? O : never;
