import { dirname, resolve } from 'node:path';
import { watch as watchFiles } from 'chokidar';
import { ComposeProblems } from '../errors.js';
import { isOurQemu, readPid } from '../observe/process.js';
import { QmpClient } from '../observe/qmp.js';
import type { ProjectLayout } from '../resources/layout.js';
import { converge, openProject, type Session } from './converge.js';
import type { Emit, HolosEvent } from './events.js';
import { acquireLock } from './lock.js';
import { instancesOnDisk } from './observe.js';
import type { Targets } from './plan.js';
import { readProjectRecord } from './project.js';

// watch: the pipeline in a loop, level-triggered (DESIGN.md §6). A trigger never says what to
// do, only that something may have changed: every pass observes everything, plans, applies.

export interface WatchOptions {
  stateDir: string;
  cwd: string;
  file?: string;
  projectName?: string;
  /** Services to keep converged; empty means the whole project. */
  services: string[];
  resyncMs: number;
  emit: Emit;
  warn: (message: string) => void;
  /** Ctrl-C: stop watching once the pass in flight ends. */
  signal: AbortSignal;
  healthBypass?: boolean;
}

/** Runs `pass` whenever kicked; kicks during a pass coalesce into one more pass. */
class Coalescer {
  #pending = false;
  #running: Promise<void> | undefined;
  readonly #pass: () => Promise<void>;

  constructor(pass: () => Promise<void>) {
    this.#pass = pass;
  }

  kick(): void {
    this.#pending = true;
    this.#running ??= this.#drain().finally(() => (this.#running = undefined));
  }

  async #drain(): Promise<void> {
    while (this.#pending) {
      this.#pending = false;
      await this.#pass();
    }
  }

  /** The pass in flight, if any. */
  idle(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }
}

const startVerbs = new Set(['create', 'recreate', 'start', 'restart']);
/** An instance up at least this long counts as stable: its backoff starts over. */
const stableMs = 30_000;
const maxDelayMs = 5 * 60_000;

/** Per-instance exponential backoff, like a controller's work queue: 1s doubling up to 5m. */
class Backoff {
  readonly #state = new Map<string, { delayMs: number; lastMs: number }>();

  /** Whether the instance must wait before its next start. */
  holds(instance: string, now = Date.now()): boolean {
    const s = this.#state.get(instance);
    return s !== undefined && now < s.lastMs + s.delayMs;
  }

  /** A start was tried: failed, or back again soon after the last one, doubles the delay. */
  attempted(instance: string, failed: boolean, now = Date.now()): void {
    const s = this.#state.get(instance) ?? { delayMs: 0, lastMs: -Infinity };
    const soon = now - s.lastMs < stableMs;
    s.delayMs = failed || soon ? Math.min(s.delayMs > 0 ? s.delayMs * 2 : 1_000, maxDelayMs) : 0;
    s.lastMs = now;
    this.#state.set(instance, s);
  }

  remainingMs(instance: string, now = Date.now()): number {
    const s = this.#state.get(instance);
    return s ? Math.max(0, s.lastMs + s.delayMs - now) : 0;
  }

  /** Milliseconds until the earliest held instance may go again. */
  nextWakeMs(now = Date.now()): number | undefined {
    const waits = [...this.#state.values()].map((s) => s.lastMs + s.delayMs - now).filter((ms) => ms > 0);
    return waits.length > 0 ? Math.min(...waits) : undefined;
  }
}

/** Persistent QMP connections (on each instance's events socket) that tell when a VM goes away. */
class VmWatchers {
  readonly #clients = new Map<string, QmpClient>();
  readonly #kick: (reason: string) => void;

  constructor(kick: (reason: string) => void) {
    this.#kick = kick;
  }

  /** Connects to every running instance not yet watched; forgets the ones that are gone. */
  async sync(layout: ProjectLayout): Promise<string[]> {
    const added: string[] = [];
    for (const name of await instancesOnDisk(layout)) {
      if (this.#clients.get(name)?.closed === false) continue;
      const files = layout.instance(name);
      const pid = await readPid(files.pidFile);
      if (pid === undefined || !(await isOurQemu(pid, files.qmpSocket))) continue;
      const client = await QmpClient.connect(files.eventSocket, { timeoutMs: 2_000 }).catch(() => undefined);
      if (!client) continue;
      this.#clients.set(name, client);
      added.push(name);
      client.on('event', (event: { event: string }) => {
        if (['SHUTDOWN', 'STOP', 'GUEST_PANICKED'].includes(event.event))
          this.#kick(`${name}: ${event.event}`);
      });
      client.on('close', () => {
        if (this.#clients.get(name) !== client) return;
        this.#clients.delete(name);
        this.#kick(`${name}: QEMU exited`);
      });
    }
    return added;
  }

  close(): void {
    const clients = [...this.#clients.values()];
    this.#clients.clear();
    for (const client of clients) client.close();
  }
}

/** The files whose change means "read the file again": the compose file and its Dockerfiles. */
function watchedPaths(session: Session): string[] {
  const { project } = session;
  const dockerfiles = project.services.flatMap((s) =>
    s.spec.dockerfile ? [resolve(project.dir, s.spec.dockerfile)] : [],
  );
  return [project.file, ...dockerfiles];
}

export async function watch(opts: WatchOptions): Promise<void> {
  const { emit } = opts;
  const backoff = new Backoff();
  const first = await openProject(opts.stateDir, opts);
  let lastGood: Session | undefined = first;
  const files = watchFiles(watchedPaths(first), {
    ignoreInitial: true,
    awaitWriteFinish: { stabilityThreshold: 150, pollInterval: 50 },
  });
  let wakeTimer: NodeJS.Timeout | undefined;

  const track: Emit = (event: HolosEvent) => {
    if (
      event.type === 'action' &&
      event.phase !== 'start' &&
      event.action.kind === 'instance' &&
      startVerbs.has(event.action.verb)
    )
      backoff.attempted(event.action.name, event.phase === 'failed');
    emit(event);
  };
  /** Holds back an instance in backoff, saying so once per pass. */
  const told = new Set<string>();
  const defer = (instance: string) => {
    if (!backoff.holds(instance)) return false;
    if (!told.has(instance)) emit({ type: 'backoff', instance, delay_ms: backoff.remainingMs(instance) });
    told.add(instance);
    return true;
  };

  const load = async (): Promise<Session | undefined> => {
    try {
      lastGood = await openProject(opts.stateDir, opts);
    } catch (error) {
      if (!(error instanceof ComposeProblems) || !lastGood) throw error;
      emit({ type: 'invalid', problems: error.problems });
    }
    return lastGood;
  };

  const targetsFor = async (session: Session): Promise<Targets> => {
    const stopped = new Set((await readProjectRecord(session.layout))?.stopped ?? []);
    const names = opts.services.length > 0 ? opts.services : session.project.services.map((s) => s.name);
    return {
      services: Object.fromEntries(names.filter((n) => !stopped.has(n)).map((n) => [n, 'running'])),
      ...(opts.services.length === 0 && { strays: 'absent' as const }),
    };
  };

  const pass = async () => {
    if (opts.signal.aborted) return;
    told.clear();
    try {
      const session = await load();
      if (!session) return;
      files.add(watchedPaths(session));
      const lock = await acquireLock(session.layout.lock, session.project.name, {
        onWait: (pid) =>
          emit({ type: 'waiting', message: `watch: waiting for holos (pid ${pid}) to finish` }),
      });
      try {
        // The record is read under the lock, so a `holos stop` that just finished is seen.
        await converge(session, await targetsFor(session), {
          emit: track,
          warn: opts.warn,
          signal: opts.signal,
          healthBypass: opts.healthBypass,
          defer,
        });
      } finally {
        await lock.release();
      }
    } catch (error) {
      if (opts.signal.aborted) return;
      emit({ type: 'error', message: (error as Error).message });
    } finally {
      if (lastGood && !opts.signal.aborted) {
        const added = await vms.sync(lastGood.layout).catch(() => []);
        if (added.length > 0) emit({ type: 'watching', instances: added });
      }
      const wake = backoff.nextWakeMs();
      clearTimeout(wakeTimer);
      if (wake !== undefined) wakeTimer = setTimeout(() => kick('backoff over'), wake);
    }
  };

  const coalescer = new Coalescer(pass);
  const kick = (reason: string) => {
    if (opts.signal.aborted) return;
    emit({ type: 'trigger', reason });
    coalescer.kick();
  };
  const vms = new VmWatchers(kick);

  files.on('all', (event, path) => kick(`${path}: ${event}`));
  files.on('error', (error) => emit({ type: 'error', message: `file watcher: ${(error as Error).message}` }));
  const resync = setInterval(() => kick('periodic resync'), opts.resyncMs);
  kick(`watching ${dirname(first.project.file)} (project ${first.project.name})`);

  await new Promise<void>((resolve) =>
    opts.signal.addEventListener('abort', () => resolve(), { once: true }),
  );
  clearInterval(resync);
  clearTimeout(wakeTimer);
  await files.close();
  await coalescer.idle();
  vms.close();
}
