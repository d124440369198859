import { statSync } from 'node:fs';
import { UserError } from '../errors.js';
import type { ProjectRecord } from './project.js';

// Project identity: a project name in a state dir belongs to one compose file. Without this,
// two checkouts named `app` would be one project, and `up` in the second would stop, recreate
// and attach what the first one made (its VMs, its root disks, its named volumes).

export interface IdentityOptions {
  /** `up --take-over`: manage the project from this file from now on. */
  takeOver?: boolean;
  /**
   * What the recorded file is to the current one: the same file (by device and inode, so a
   * symlinked path is the same), another file, or gone (the checkout was moved or deleted).
   */
  compare: (recorded: string, current: string) => 'same' | 'other' | 'gone';
}

/** `compare` on the host: stat both. */
export function compareFiles(recorded: string, current: string): 'same' | 'other' | 'gone' {
  const a = statSync(recorded, { throwIfNoEntry: false });
  if (!a) return 'gone';
  const b = statSync(current, { throwIfNoEntry: false });
  return b && a.dev === b.dev && a.ino === b.ino ? 'same' : 'other';
}

/**
 * Whether `file` may manage the project recorded in `record`: undefined when it is its own file
 * (or the project is new), a notice when it is adopted (the recorded file is gone: the checkout
 * moved), and a UserError naming the other file and the ways out when another file manages it.
 */
export function checkIdentity(
  record: Pick<ProjectRecord, 'name' | 'file'> | undefined,
  file: string,
  options: IdentityOptions,
): string | undefined {
  if (!record?.file || record.file === file) return undefined;
  const seen = options.compare(record.file, file);
  if (seen === 'same') return undefined;
  if (options.takeOver) return `project ${record.name} is now managed from ${file} (it was ${record.file})`;
  if (seen === 'gone')
    return `project ${record.name} was managed from ${record.file}, which is gone; adopting it from ${file}`;
  throw new UserError(
    `project ${record.name} is managed from ${record.file}, not from ${file}: name this one with -p <name>, ` +
      `free the name with holos down -v in ${record.file}'s directory, or manage it from here with holos up --take-over`,
  );
}
