import { image } from './image.js';
import { instance } from './instance.js';
import { keypair } from './keypair.js';
import { nvram } from './nvram.js';
import { overlay } from './overlay.js';
import { seed } from './seed.js';
import { segment } from './segment.js';
import { volume } from './volume.js';

/**
 * Every resource kind, in the order the planner diffs them: a kind's diff may look at the
 * changes planned for the kinds before it (an instance's disk and seed follow what the
 * instance will do). Adding a kind: its module, and a line here.
 */
export const kinds = { keypair, image, volume, segment, instance, overlay, seed, nvram } as const;

export type AnyKind = (typeof kinds)[keyof typeof kinds];
