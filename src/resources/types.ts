import type { Operation } from 'fast-json-patch';

// The shapes every resource kind shares (DESIGN.md §3): `desired` and `diff` are pure,
// `observe` and the executors touch the host.

/** What a verb asks for, per service. */
export type Target = 'running' | 'stopped' | 'absent';

export type ResourceKind = 'keypair' | 'image' | 'volume' | 'overlay' | 'seed' | 'instance';

export type Verb =
  | 'generate'
  | 'pull'
  | 'create'
  | 'recreate'
  | 'rebase'
  | 'write'
  | 'start'
  | 'restart'
  | 'resume'
  | 'stop'
  | 'remove'
  | 'record';

/** One step of a plan. Plans are data: printed, serialised for --json, then executed. */
export interface Action {
  kind: ResourceKind;
  /** The resource's name: the project, a volume, an image ref or an instance. */
  name: string;
  verb: Verb;
  /** Why, in words a user reads in the plan. */
  reason: string;
  /** Set for every action on an instance's overlay, seed or process. */
  instance?: string;
  service?: string;
  /** For changes: RFC 6902 operations from the applied spec to the desired one. */
  patch?: Operation[];
}
