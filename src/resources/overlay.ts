import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { readQcow2Header } from '../observe/qcow2.js';
import { isMissing } from '../util/fs.js';
import type { ImageSpec } from './image.js';
import type { Action, Target } from './types.js';

// The root disk of an instance: a qcow2 overlay on the base image, so the base is shared and
// never written. Its backing chain is read from the header on every observe.

export interface OverlaySpec {
  instance: string;
  path: string;
  base: ImageSpec;
  /** Bytes; undefined keeps the base image's size. */
  size?: number;
}

export interface OverlayObserved {
  exists: boolean;
  backingFile?: string;
  backingFormat?: string;
  virtualSize?: number;
}

export async function observe(spec: OverlaySpec): Promise<OverlayObserved> {
  try {
    const header = await readQcow2Header(spec.path);
    return { exists: true, ...header };
  } catch (error) {
    if (isMissing(error)) return { exists: false };
    throw error;
  }
}

/** Drift of the disk itself (missing, or on another base); spec changes are the instance's to judge. */
export function diff(spec: OverlaySpec, observed: OverlayObserved, target: Target): Action[] {
  if (target !== 'running') return [];
  const act = (verb: 'create' | 'recreate', reason: string): Action[] => [
    { kind: 'overlay', name: spec.instance, instance: spec.instance, verb, reason },
  ];
  if (!observed.exists) return act('create', 'no root disk');
  if (observed.backingFile !== spec.base.path)
    return act(
      'recreate',
      `the root disk is based on ${observed.backingFile ?? 'nothing'}, not ${spec.base.path}`,
    );
  if (observed.backingFormat !== undefined && observed.backingFormat !== spec.base.format)
    return act('recreate', `the base image format is ${observed.backingFormat}, not ${spec.base.format}`);
  return [];
}

/** Makes a fresh overlay, replacing any old one: the instance's root disk starts over. */
export async function create(spec: OverlaySpec, qemuImg: string): Promise<void> {
  await mkdir(dirname(spec.path), { recursive: true, mode: 0o700 });
  await rm(spec.path, { force: true });
  const size = spec.size === undefined ? [] : [String(spec.size)];
  const args = [
    'create',
    '-q',
    '-f',
    'qcow2',
    '-F',
    spec.base.format,
    '-b',
    spec.base.path,
    spec.path,
    ...size,
  ];
  const { execa } = await import('execa');
  await execa(qemuImg, args);
}
