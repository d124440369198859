import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, rmdir, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { UserError } from '../errors.js';
import { readIfPresent } from '../util/fs.js';

// One apply per project at a time.
//
// The lock at `path` is a directory holding one file, named for this one holding
// (`pid-<pid>-<random>`), that says who holds it: {"pid":…,"start":…,"boot":…}. `start` is
// when the process started (field 22 of /proc/<pid>/stat, clock ticks after boot) and `boot`
// the kernel's boot id, so that a pid now used by another process, or a lock left from before
// a reboot, is seen for what it is: a dead holder.
//
// Why a directory and not a file: taking over a dead holder's lock must remove that lock and
// nothing else, and a file at a fixed name has no compare-and-remove. Two processes that both
// judged the same dead holder would race: the first removes it and takes the lock, the second
// then removes (or renames aside) the first one's fresh lock; and while it puts that back, the
// name is free for a third. A name unique to each holding is the compare: unlink(path/<name>)
// removes exactly the holding that was judged, or nothing. And rename() of a directory onto an
// existing one succeeds only if that one is empty, which makes taking the lock atomic:
//
//   take     write <name> into a private directory beside the lock (`<lock>.new-<pid>-<start>-
//            <random>`), then rename that directory onto `path`. ENOTEMPTY/EEXIST: it is held.
//   judge    read the holder's file; a holder whose pid is gone, a zombie, or whose start time or
//            boot differs is dead.
//   steal    unlink path/<name> of a holder just judged dead (ENOENT: someone else did), then
//            take again: of all who judged it, exactly one rename succeeds.
//   release  unlink path/<our name> (ours by its name; gone if `path` was removed under us),
//            then rmdir `path` if it is empty (a new holder's directory never is).
//
// So at most one process holds the lock: `path` never has more than one entry (a rename brings
// a whole one-entry directory and fails onto a non-empty one, and nobody writes into `path`
// itself), and an entry goes only by its holder's release or by a process that has just read
// it and judged its holder dead, which never comes back and whose name is never used again.
//
// holos before 0.2 made the lock a file holding the holder's pid alone: such a file is judged
// by liveness only, and removed with unlink(), which cannot remove a directory (EISDIR), so it
// never removes a lock of this protocol. (A holos that old running at the same time on the same
// state dir is not kept out: it does not know this protocol.)
//
// Being a directory, the lock must sit where nothing takes directories for something else: in
// instances/<project>/ it would be observed as an instance, and removed as a stray
// (layout.ts puts it in projects/, beside the project records).
//
// A process that is killed while it waits leaves its private directory; whoever takes the lock
// next removes those of dead processes, whose names say who made them.

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

/** Who holds (or held) a lock. `start` and `boot` are missing from a lock of an older holos. */
interface Holder {
  pid: number;
  start?: number;
  boot?: string;
}

const pollMs = 200;

const codeOf = (error: unknown) => (error as NodeJS.ErrnoException).code;

/** The process's state and start time from /proc/<pid>/stat; undefined once it is gone. */
async function procStat(pid: number): Promise<{ state: string; start: number } | undefined> {
  const text = await readIfPresent(`/proc/${pid}/stat`);
  if (text === undefined) return undefined;
  // Field 2, the command name in parentheses, may itself hold spaces and parentheses: the
  // fields after it start after the last ')'. There field 3 (state) is [0], field 22 [19].
  const fields = text
    .slice(text.lastIndexOf(')') + 1)
    .trim()
    .split(' ');
  const start = Number(fields[19]);
  if (!fields[0] || !Number.isSafeInteger(start)) throw new Error(`/proc/${pid}/stat: unexpected "${text}"`);
  return { state: fields[0], start };
}

let ownIdentity: Promise<Required<Holder>> | undefined;

const me = (): Promise<Required<Holder>> =>
  (ownIdentity ??= (async () => {
    const stat = await procStat(process.pid);
    if (!stat) throw new UserError('holos needs /proc (Linux) to lock a project');
    const boot = await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '');
    return { pid: process.pid, start: stat.start, boot: boot.trim() };
  })());

/**
 * `self`: the holder is this very process; `dead`: its pid is gone, a zombie, or another
 * process now (another start time, another boot); else `live`.
 */
async function judge(holder: Holder, self: Required<Holder>): Promise<'self' | 'live' | 'dead'> {
  if (holder.pid === self.pid)
    // Only one process has our pid: if the file does not say it is us, it was one before us.
    return holder.start === self.start && (holder.boot ?? self.boot) === self.boot ? 'self' : 'dead';
  if (holder.boot !== undefined && holder.boot !== self.boot) return 'dead';
  const stat = await procStat(holder.pid);
  // A zombie (killed, not yet reaped by its parent) holds nothing.
  if (!stat || stat.state === 'Z' || stat.state === 'X') return 'dead';
  return holder.start === undefined || holder.start === stat.start ? 'live' : 'dead';
}

/** A holder's file: JSON, or the bare pid of an older holos; undefined for anything else (torn). */
function parseHolder(text: string): Holder | undefined {
  if (/^\d+\s*$/.test(text)) return { pid: Number(text) };
  try {
    const value = JSON.parse(text) as Partial<Holder>;
    if (Number.isSafeInteger(value.pid) && value.pid! > 0 && Number.isSafeInteger(value.start))
      return {
        pid: value.pid!,
        start: value.start!,
        ...(typeof value.boot === 'string' && { boot: value.boot }),
      };
  } catch {
    // torn: judged dead below
  }
  return undefined;
}

/** The private directory a process renames onto the lock path to take it. */
class Claim {
  readonly path: string;
  readonly holder: Required<Holder>;
  readonly dir: string;
  readonly entry: string;
  private made = false;

  constructor(path: string, holder: Required<Holder>) {
    const random = randomBytes(6).toString('hex');
    this.path = path;
    this.holder = holder;
    this.dir = `${path}.new-${holder.pid}-${holder.start}-${random}`;
    this.entry = `pid-${holder.pid}-${random}`;
  }

  /** True once the lock is ours; false while another holds it (or an older holos's file is there). */
  async take(): Promise<boolean> {
    for (;;) {
      try {
        if (!this.made) {
          await mkdir(this.dir, { recursive: true, mode: 0o700 });
          await writeFile(join(this.dir, this.entry), `${JSON.stringify(this.holder)}\n`, { mode: 0o600 });
          this.made = true;
        }
        await rename(this.dir, this.path);
        this.made = false;
        return true;
      } catch (error) {
        const code = codeOf(error);
        if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR') return false;
        // The directory holding the lock was removed (and our claim with it): make both again.
        if (code === 'ENOENT') this.made = false;
        else throw error;
      }
    }
  }

  /** Removes the claim if it was not renamed into place (nothing else uses its name). */
  discard(): Promise<void> {
    return rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * The live holder's pid; undefined when the lock is free now (it was released, or its holder
 * was dead and has just been removed): then taking it is tried again at once.
 */
async function liveHolder(path: string, self: Required<Holder>): Promise<number | undefined> {
  let entries: string[];
  try {
    entries = await readdir(path);
  } catch (error) {
    if (codeOf(error) === 'ENOENT') return undefined;
    if (codeOf(error) === 'ENOTDIR') return olderHolosFile(path, self);
    throw error;
  }
  for (const name of entries) {
    const file = join(path, name);
    const text = await readIfPresent(file);
    if (text === undefined) continue; // released (or stolen) since readdir
    const holder = parseHolder(text);
    const verdict = holder ? await judge(holder, self) : 'dead';
    // A bug in the caller; the lock is left as it is, held.
    if (verdict === 'self')
      throw new Error(
        `lock ${path} is already held by this process (pid ${self.pid}): acquired again before its release`,
      );
    if (verdict === 'live') return holder!.pid;
    await unlink(file).catch((error: unknown) => {
      if (codeOf(error) !== 'ENOENT') throw error; // another waiter removed it first
    });
  }
  return undefined;
}

/** A lock file of holos before 0.2: the holder's pid alone, or torn by a crash. */
async function olderHolosFile(path: string, self: Required<Holder>): Promise<number | undefined> {
  const text = await readIfPresent(path).catch((error: unknown) => {
    // Removed by another waiter since, who has taken the lock: a directory now, look again.
    if (codeOf(error) === 'EISDIR') return undefined;
    throw error;
  });
  if (text === undefined) return undefined;
  const holder = parseHolder(text);
  if (holder && (await judge(holder, self)) === 'live') return holder.pid;
  await unlink(path).catch((error: unknown) => {
    // Removed by another waiter, who may have taken the lock since: a directory, never unlinked.
    if (codeOf(error) !== 'ENOENT' && codeOf(error) !== 'EISDIR') throw error;
  });
  return undefined;
}

/** Removes the claims that killed waiters left beside the lock (their names say whose). */
async function sweepClaims(path: string, self: Required<Holder>): Promise<void> {
  const prefix = `${basename(path)}.new-`;
  for (const name of await readdir(dirname(path)).catch(() => [])) {
    const owner = /^(\d+)-(\d+)-[0-9a-f]+$/.exec(name.startsWith(prefix) ? name.slice(prefix.length) : '');
    if (owner && (await judge({ pid: Number(owner[1]), start: Number(owner[2]) }, self)) === 'dead')
      await rm(join(dirname(path), name), { recursive: true, force: true }).catch(() => undefined);
  }
}

/** An I/O error the lock cannot handle, as one line naming the path. */
function lockError(path: string, error: unknown): unknown {
  // Errors of system calls only (they have `syscall`): anything else is a bug, with its stack.
  if (error instanceof UserError || (error as NodeJS.ErrnoException).syscall === undefined) return error;
  return new UserError(`cannot lock ${path}: ${(error as Error).message}`);
}

export async function acquireLock(path: string, project: string, opts: LockOptions = {}): Promise<Lock> {
  const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
  const self = await me();
  const claim = new Claim(path, self);
  let told = false;
  try {
    for (;;) {
      if (await claim.take()) {
        await sweepClaims(path, self);
        return { release: () => release(path, claim.entry) };
      }
      const pid = await liveHolder(path, self);
      if (pid === undefined) continue;
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
  } catch (error) {
    throw lockError(path, error);
  } finally {
    await claim.discard();
  }
}

async function release(path: string, entry: string): Promise<void> {
  try {
    await unlink(join(path, entry));
  } catch (error) {
    // Gone with the directory it was in: nothing of ours is left to remove.
    if (codeOf(error) !== 'ENOENT') throw lockError(path, error);
  }
  await rmdir(path).catch((error: unknown) => {
    // Not empty: another process has taken the lock since. Gone: removed under us.
    const code = codeOf(error);
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOENT') throw lockError(path, error);
  });
}
