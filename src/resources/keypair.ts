import { join } from 'node:path';
import type { KeyFiles } from '../ssh/keys.js';
import { readIfPresent } from '../util/fs.js';
import type { ProjectLayout } from './layout.js';
import type { Action, Target } from './types.js';

// The project's SSH key pair: the login key of every instance. Made once, never replaced.

export interface KeypairSpec {
  /** The project, or `<instance> host key`. */
  name: string;
  dir: string;
  comment: string;
}

export interface KeypairObserved {
  /** The public key line, when the pair exists. */
  publicKey?: string;
}

export const desired = (layout: ProjectLayout): KeypairSpec => ({
  name: layout.project,
  dir: layout.sshDir,
  comment: `holos project ${layout.project}`,
});

export async function observe(spec: KeypairSpec): Promise<KeypairObserved> {
  return { publicKey: (await read(spec))?.publicKey };
}

export function diff(spec: KeypairSpec, observed: KeypairObserved, target: Target): Action[] {
  if (target !== 'running' || observed.publicKey) return [];
  return [{ kind: 'keypair', name: spec.name, verb: 'generate', reason: 'no key pair yet' }];
}

// ssh2 (key generation) loads only when a key is made: `plan` and `ps` stay quick.
export const generate = async (spec: KeypairSpec): Promise<KeyFiles> =>
  (await import('../ssh/keys.js')).ensureKeyPair(spec.dir, spec.comment);

/** The pair's contents, when it exists (for rendering seeds and for SSH). */
export async function read(
  spec: KeypairSpec,
): Promise<{ privateKey: string; publicKey: string } | undefined> {
  const privateKey = await readIfPresent(join(spec.dir, 'id_ed25519'));
  const publicKey = (await readIfPresent(join(spec.dir, 'id_ed25519.pub')))?.trim();
  return privateKey && publicKey ? { privateKey, publicKey } : undefined;
}
