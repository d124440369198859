import { join } from 'node:path';
import { UserError } from '../errors.js';
import { exists } from '../util/fs.js';
import type { Kind } from './kind.js';

// Base images: a local file named in the compose file, or a catalog image in the cache.

export interface ImageSpec {
  ref: string;
  path: string;
  format: 'qcow2' | 'raw';
  /** The services whose instances start from it. */
  services?: string[];
}

export interface ImageObserved {
  exists: boolean;
}

/** Where a catalog image lives in the cache: `images/<name>-<tag>.<format>`. */
export const cachePath = (stateDir: string, ref: string, format: string) =>
  join(stateDir, 'images', `${ref.replace(/[:/]/g, '-')}.${format}`);

/** The base image of a service. */
export function imageOf(
  service: { image: { ref: string; path?: string; format: 'qcow2' | 'raw' } },
  stateDir: string,
) {
  const { ref, format } = service.image;
  return { ref, path: service.image.path ?? cachePath(stateDir, ref, format), format };
}

export function pull(spec: ImageSpec): Promise<void> {
  // Downloading catalog images is its own piece of work (holos pull); until then say what to do.
  return Promise.reject(
    new UserError(
      `image ${spec.ref} is not at ${spec.path}; download a cloud image there, or point image: at a local qcow2 file`,
    ),
  );
}

export const image: Kind<'image', ImageSpec, ImageObserved> = {
  kind: 'image',

  /** One spec per image ref, with the services that use it (a cache file is pulled once). */
  desired({ project, layout }) {
    const specs = new Map<string, ImageSpec>();
    for (const service of project.services) {
      const base = imageOf(service, layout.stateDir);
      const known = specs.get(base.ref);
      if (known) known.services!.push(service.name);
      else specs.set(base.ref, { ...base, services: [service.name] });
    }
    return specs;
  },

  async observe(_name, spec) {
    return { exists: spec ? await exists(spec.path) : false };
  },

  diff(name, spec, observed, ctx) {
    if (!spec || observed.exists) return [];
    const used = ctx.project.services.some(
      (s) => spec.services!.includes(s.name) && ctx.targetOf(s.name) === 'running' && s.spec.replicas > 0,
    );
    if (!used) return [];
    return [{ kind: 'image', name, verb: 'pull', cause: 'missing', reason: `not found at ${spec.path}` }];
  },

  execute: {
    pull: ({ spec }) => pull(spec!),
  },
};
