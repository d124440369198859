import { dirname, resolve } from 'node:path';
import { watch as watchFiles } from 'chokidar';
import { ComposeProblems } from '../errors.js';
import { QmpClient, type QmpEvent } from '../observe/qmp.js';
import { leftStopped, restartsAfter, type Exit } from './restart.js';
import { inspectProject } from '../state/inspect.js';
import type { ProjectLayout } from '../state/layout.js';
import { acquireLock } from '../state/lock.js';
import { readProjectRecord } from '../state/project.js';
import type { ApplyResult } from './apply.js';
import { envFileOf, loadCompose, type LoadedCompose } from '../compose/load.js';
import { openLoaded, type Session } from '../session.js';
import { projectLayout } from '../state/layout.js';
import { ApplyFailed, converge, type Planned } from './converge.js';
import type { Emit } from '../events.js';
import { Backoff, Coalescer } from './queue.js';
import { targetsFor } from './targets.js';
import { activeServices } from '../compose/profiles.js';
import { envFilesOf } from '../compose/environment.js';

// watch: the pipeline in a loop, level-triggered (DESIGN.md §7). A trigger never says what to
// do, only that something may have changed: every pass observes everything, plans, applies.

export interface WatchOptions {
  stateDir: string;
  cwd: string;
  files?: readonly string[];
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

const startVerbs = new Set(['create', 'recreate', 'start', 'restart']);

/** What a pass sees of one instance: its desired spec and observed state (for terminal holds). */
const worldOf = (planned: Planned, instance: string) =>
  JSON.stringify([
    planned.desired.specs.instance.get(instance) ?? null,
    planned.observed.instance[instance] ?? null,
  ]);

/**
 * Persistent QMP connections (on each instance's events socket) that tell when a VM goes away,
 * and how: `exits` has each instance that stopped by itself since it last ran (restart.ts).
 */
class VmWatchers {
  readonly #clients = new Map<string, QmpClient>();
  readonly #kick: (reason: string) => void;
  readonly exits = new Map<string, Exit>();

  constructor(kick: (reason: string) => void) {
    this.#kick = kick;
  }

  /** Connects to every running instance not yet watched; forgets the ones that are gone. */
  async sync(layout: ProjectLayout): Promise<string[]> {
    const added: string[] = [];
    for (const seen of await inspectProject(layout)) {
      const { name } = seen;
      if (this.#clients.get(name)?.closed === false || seen.pid === undefined) continue;
      const client = await QmpClient.connect(seen.layout.eventSocket, { timeoutMs: 2_000 }).catch(
        () => undefined,
      );
      if (!client) continue;
      this.#clients.set(name, client);
      this.exits.delete(name);
      added.push(name);
      // A power-off the guest asked for is clean; a panic, or QEMU gone without one, is a failure.
      let poweredOff = false;
      client.on('event', (event: QmpEvent) => {
        const reason = (event.data as { reason?: string } | undefined)?.reason;
        if (event.event === 'SHUTDOWN') poweredOff = reason === 'guest-shutdown';
        if (event.event === 'GUEST_PANICKED') poweredOff = false;
        if (['SHUTDOWN', 'STOP', 'GUEST_PANICKED'].includes(event.event))
          this.#kick(`${name}: ${event.event}${reason ? ` (${reason})` : ''}`);
      });
      client.on('close', () => {
        if (this.#clients.get(name) !== client) return;
        this.#clients.delete(name);
        this.exits.set(name, poweredOff ? 'poweroff' : 'failure');
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

/** The files whose change means "read the file again": the compose files and their Dockerfiles. */
function watchedPaths(session: Session): string[] {
  const { project } = session;
  const dockerfiles = project.services.flatMap((s) =>
    s.spec.dockerfile ? [resolve(project.dir, s.spec.dockerfile)] : [],
  );
  // The .env its variables come from, and the services' env_file files, too: an edit of one
  // is an edit of the project.
  return [
    ...project.files,
    envFileOf(project.file).path,
    ...envFilesOf(
      project.services.map((s) => s.spec),
      project.dir,
    ),
    ...dockerfiles,
  ];
}

export async function watch(opts: WatchOptions): Promise<void> {
  const { emit } = opts;
  const backoff = new Backoff();
  let lastGood: LoadedCompose = loadCompose(opts);
  /** The project as the last pass opened it (whose VMs it follows); the first is opened now. */
  let current: Session = await openLoaded(opts.stateDir, lastGood);
  const first = current;
  const files = watchFiles(watchedPaths(first), {
    ignoreInitial: true,
    awaitWriteFinish: { stabilityThreshold: 150, pollInterval: 50 },
  });
  let wakeTimer: NodeJS.Timeout | undefined;

  /** Holds back an instance in backoff or behind a terminal error, saying so once per pass. */
  const told = new Set<string>();
  const defer = (instance: string, planned: Planned) => {
    if (!backoff.holds(instance, worldOf(planned, instance))) return false;
    if (!told.has(instance) && !backoff.terminal(instance))
      emit({ type: 'backoff', instance, delay_ms: backoff.remainingMs(instance) });
    told.add(instance);
    return true;
  };
  /** Apply's outcome per instance feeds the queue: what failed, and how, and what started. */
  const learn = (planned: Planned, result: ApplyResult, startedVms: Set<string>) => {
    for (const [instance, outcome] of result.instances) {
      const wasTerminal = backoff.terminal(instance) !== undefined;
      backoff.record(instance, outcome, worldOf(planned, instance), startedVms.has(instance));
      const terminal = backoff.terminal(instance);
      if (terminal && !wasTerminal)
        emit({
          type: 'error',
          message: `${instance}: ${terminal} (not retried until the file or the host changes; holos up tries again now)`,
        });
    }
  };

  /** The file as it is now, or the last one that was valid (an invalid edit changes nothing). */
  const load = (): LoadedCompose => {
    try {
      lastGood = loadCompose(opts);
    } catch (error) {
      if (!(error instanceof ComposeProblems)) throw error;
      emit({ type: 'invalid', problems: error.problems });
    }
    return lastGood;
  };

  const pass = async () => {
    if (opts.signal.aborted) return;
    told.clear();
    try {
      const loaded = load();
      const lock = await acquireLock(projectLayout(opts.stateDir, loaded.project).lock, loaded.project, {
        onWait: (pid) =>
          emit({ type: 'waiting', message: `watch: waiting for holos (pid ${pid}) to finish` }),
      });
      try {
        // The record is read under the lock, so a `holos stop` that just finished is seen.
        const session = await openLoaded(opts.stateDir, loaded);
        current = session;
        files.add(watchedPaths(session));
        const stopped = (await readProjectRecord(session.layout))?.stopped ?? [];
        const services = activeServices(
          Object.fromEntries(session.project.services.map((s) => [s.name, s.spec])),
          undefined,
          opts.services,
        );
        const targets = {
          ...targetsFor('watch', services, { named: opts.services, stopped }),
          leave: leaveStopped(session),
        };
        let converged: Awaited<ReturnType<typeof converge>> | undefined;
        try {
          converged = await converge(session, targets, {
            emit,
            warn: opts.warn,
            signal: opts.signal,
            healthBypass: opts.healthBypass,
            defer,
          });
        } catch (error) {
          if (!(error instanceof ApplyFailed)) throw error;
          converged = error.converged;
          if (!opts.signal.aborted) emit({ type: 'error', message: error.message });
        }
        const started = new Set(
          converged.plan.actions
            .filter((a) => a.kind === 'instance' && startVerbs.has(a.verb))
            .map((a) => a.name),
        );
        learn(converged.planned, converged.result, started);
      } finally {
        await lock.release();
      }
    } catch (error) {
      if (opts.signal.aborted) return;
      emit({ type: 'error', message: (error as Error).message });
    } finally {
      if (!opts.signal.aborted) {
        const added = await vms.sync(current.layout).catch(() => []);
        if (added.length > 0) emit({ type: 'watching', instances: added });
      }
      const wake = backoff.nextWakeMs();
      clearTimeout(wakeTimer);
      if (wake !== undefined) wakeTimer = setTimeout(() => kick('backoff over'), wake);
    }
  };

  /** Restarts watch made of each instance in this run (on-failure:N allows N). */
  const restarts = new Map<string, number>();
  /** Said once per stop: the instances watch leaves stopped under their restart policy. */
  const toldStopped = new Set<string>();
  /**
   * The instances that stopped by themselves and that their service's restart policy leaves
   * stopped; the others are started again (counted). A `holos start` from elsewhere runs them
   * again, and `vms.sync` then forgets how they stopped.
   */
  const leaveStopped = (session: Session): string[] => {
    const leave: string[] = [];
    for (const [instance, exit] of vms.exits) {
      const service = session.project.instances.find((i) => i.name === instance)?.service;
      const policy = session.project.services.find((s) => s.name === service)?.spec.restart;
      if (service === undefined || policy === undefined) continue;
      const count = restarts.get(instance) ?? 0;
      if (restartsAfter(policy, exit, count)) {
        restarts.set(instance, count + 1);
        vms.exits.delete(instance);
        continue;
      }
      leave.push(instance);
      if (!toldStopped.has(instance))
        emit({ type: 'warning', message: leftStopped(instance, service, policy, exit) });
      toldStopped.add(instance);
    }
    for (const instance of toldStopped) if (!vms.exits.has(instance)) toldStopped.delete(instance);
    return leave;
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
