import { join } from 'node:path';
import type { ResolvedProject } from '../compose/resolve.js';
import { UserError } from '../errors.js';
import { exists } from '../util/fs.js';
import type { Action, Target } from './types.js';

// Base images: a local file named in the compose file, or a catalog image in the cache.

export interface ImageSpec {
  ref: string;
  path: string;
  format: 'qcow2' | 'raw';
}

export interface ImageObserved {
  exists: boolean;
}

/** Where a catalog image lives in the cache: `images/<name>-<tag>.<format>`. */
export const cachePath = (stateDir: string, ref: string, format: string) =>
  join(stateDir, 'images', `${ref.replace(/[:/]/g, '-')}.${format}`);

/** The base image of each service, deduplicated by path. */
export function desired(project: ResolvedProject, stateDir: string): Map<string, ImageSpec> {
  return new Map(
    project.services.map((s) => {
      const { ref, format } = s.image;
      const path = s.image.path ?? cachePath(stateDir, ref, format);
      return [s.name, { ref, path, format }];
    }),
  );
}

export async function observe(spec: ImageSpec): Promise<ImageObserved> {
  return {
    exists: await exists(spec.path),
  };
}

export function diff(spec: ImageSpec, observed: ImageObserved, target: Target): Action[] {
  if (target !== 'running' || observed.exists) return [];
  return [{ kind: 'image', name: spec.ref, verb: 'pull', reason: `not found at ${spec.path}` }];
}

export function pull(spec: ImageSpec): Promise<void> {
  // Downloading catalog images is its own piece of work (holos pull); until then say what to do.
  return Promise.reject(
    new UserError(
      `image ${spec.ref} is not at ${spec.path}; download a cloud image there, or point image: at a local qcow2 file`,
    ),
  );
}
