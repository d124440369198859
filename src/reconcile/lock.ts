import { link, mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { UserError } from '../errors.js';
import { readIfPresent } from '../util/fs.js';

// One apply per project at a time. The lock is a file created exclusively, holding the pid of
// its holder; a lock whose holder is gone (holos was killed) is taken over.

export interface LockOptions {
  /** Fail at once instead of waiting. */
  noWait?: boolean;
  /** Give up after this long (ms); undefined waits forever. */
  timeoutMs?: number;
  /** Told once when another process holds the lock. */
  onWait?: (holder: number) => void;
}

export interface Lock {
  release(): Promise<void>;
}

const pollMs = 200;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** The holder's pid; undefined for a file without one; 'released' once the file is gone. */
async function holder(path: string): Promise<number | 'released' | undefined> {
  const text = await readIfPresent(path);
  if (text === undefined) return 'released';
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * The lock file appears with the pid already in it (written aside, then hard-linked into
 * place, which fails if it exists): a waiter never reads an empty file and takes it for stale.
 */
async function tryCreate(path: string): Promise<boolean> {
  const mine = `${path}.${process.pid}`;
  await writeFile(mine, `${process.pid}\n`, { mode: 0o600 });
  try {
    await link(mine, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await rm(mine, { force: true });
  }
}

export async function acquireLock(path: string, project: string, opts: LockOptions = {}): Promise<Lock> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
  let told = false;
  for (;;) {
    if (await tryCreate(path)) return { release: () => rm(path, { force: true }) };
    const pid = await holder(path);
    // Released between our attempt and the read: try again, and never remove what a third
    // process may have created in the meantime.
    if (pid === 'released') continue;
    if (pid === undefined || pid === process.pid || !alive(pid)) {
      // A holder that died (or a file torn by a crash of an older holos): the lock is stale.
      await rm(path, { force: true });
      continue;
    }
    if (opts.noWait)
      throw new UserError(
        `project ${project} is being changed by another holos (pid ${pid}); try again when it finishes`,
      );
    if (Date.now() >= deadline)
      throw new UserError(`project ${project}: gave up waiting for the holos with pid ${pid} to finish`);
    if (!told) opts.onWait?.(pid);
    told = true;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
