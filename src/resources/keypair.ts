import { join } from 'node:path';
import type { KeyFiles } from '../ssh/keys.js';
import type { ProjectLayout } from '../state/layout.js';
import { readIfPresent } from '../util/fs.js';
import type { Kind } from './kind.js';

// SSH key pairs holos makes, never replaces and only removes with the project: the project's
// (the login key of every instance) and each instance's host key (given to the guest through
// cloud-init, so its key is pinned instead of trusted on first use).

export interface KeypairSpec {
  /** The project, or `<instance> host key`. */
  name: string;
  dir: string;
  comment: string;
  /** The instance of a host key; the project key has none. */
  instance?: string;
  /** The service of that instance, whose target says whether the key is needed. */
  service?: string;
}

export interface KeypairObserved {
  /** The public key line, when the pair exists. */
  publicKey?: string;
}

export const projectKeySpec = (layout: ProjectLayout): KeypairSpec => ({
  name: layout.project,
  dir: layout.sshDir,
  comment: `holos project ${layout.project}`,
});

export const hostKeyName = (instance: string) => `${instance} host key`;

export const hostKeySpec = (layout: ProjectLayout, instance: string, service: string): KeypairSpec => ({
  name: hostKeyName(instance),
  dir: layout.instance(instance).hostKey,
  comment: `holos host key ${instance}`,
  instance,
  service,
});

/** The pair's contents, when it exists (for rendering seeds and for SSH). */
export async function read(
  spec: Pick<KeypairSpec, 'dir'>,
): Promise<{ privateKey: string; publicKey: string } | undefined> {
  const privateKey = await readIfPresent(join(spec.dir, 'id_ed25519'));
  const publicKey = (await readIfPresent(join(spec.dir, 'id_ed25519.pub')))?.trim();
  return privateKey && publicKey ? { privateKey, publicKey } : undefined;
}

// ssh2 (key generation) loads only when a key is made: `plan` and `ps` stay quick.
export const generate = async (spec: KeypairSpec): Promise<KeyFiles> =>
  (await import('../ssh/keys.js')).ensureKeyPair(spec.dir, spec.comment);

export const keypair: Kind<'keypair', KeypairSpec, KeypairObserved> = {
  kind: 'keypair',

  desired({ project, layout }) {
    const specs = [
      projectKeySpec(layout),
      ...project.instances.map((i) => hostKeySpec(layout, i.name, i.service)),
    ];
    return new Map(specs.map((s) => [s.name, s]));
  },

  async observe(_name, spec) {
    return spec ? { publicKey: (await read(spec))?.publicKey } : {};
  },

  diff(name, spec, observed, ctx) {
    if (!spec || observed.publicKey) return [];
    // The project key is needed as soon as any service runs; a host key when its service does.
    const needed = spec.service
      ? ctx.targetOf(spec.service, spec.instance) === 'running'
      : ctx.project.services.some((s) => ctx.targetOf(s.name) === 'running' && s.spec.replicas > 0);
    if (!needed) return [];
    return [
      {
        kind: 'keypair',
        name,
        verb: 'generate',
        cause: 'missing',
        reason: 'no key pair yet',
        ...(spec.instance && { instance: spec.instance, service: spec.service }),
      },
    ];
  },

  execute: {
    generate: async ({ spec }) => {
      await generate(spec!);
    },
  },
};
