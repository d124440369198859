import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { UserError } from '../errors.js';

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

async function holder(path: string): Promise<number | undefined> {
  const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

async function tryCreate(path: string): Promise<boolean> {
  try {
    const handle = await open(path, 'wx', 0o600);
    await handle.writeFile(`${process.pid}\n`);
    await handle.close();
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

export async function acquireLock(path: string, project: string, opts: LockOptions = {}): Promise<Lock> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
  let told = false;
  for (;;) {
    if (await tryCreate(path)) return { release: () => rm(path, { force: true }) };
    const pid = await holder(path);
    if (pid === undefined || pid === process.pid || !alive(pid)) {
      // A holder that died (or a file torn mid-write): the lock is stale.
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
