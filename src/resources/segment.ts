import { spawn } from 'node:child_process';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isOurQemu as isOurProcess, readPid } from '../observe/process.js';
import type { ProjectLayout } from '../state/layout.js';
import { sleep } from '../util/sleep.js';
import { exists } from '../util/fs.js';
import type { Kind } from './kind.js';

// The project's private segment: its switch process (net/switch.ts), one per project, started
// before the first VM that needs it and stopped once none of the project's VMs runs. It is
// observed like a VM: a pid file whose process's command line names the project's instance
// directory. A switch that died is drift: the plan starts it again, and it reconnects every
// running VM (their QEMUs listen on), so none restarts.

export interface SegmentSpec {
  project: string;
  /** Where the VMs' sockets are: `instances/<project>/<instance>/segment.sock`. */
  instancesDir: string;
}

export interface SegmentObserved {
  /** The live switch's pid. */
  pid?: number;
  /** holos started a switch and did not stop it, and none runs: it died (or was killed). */
  died?: boolean;
}

/** What starts the switch: net/switch-main.ts, or the bundle's dist/switch.js beside the CLI. */
function switchProgram(): string[] {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.ts'))
    return ['--import', import.meta.resolve('tsx'), join(dirname(here), '..', 'net', 'switch-main.ts')];
  const dist = basename(dirname(here)) === 'chunks' ? dirname(dirname(here)) : dirname(here);
  return [join(dist, 'switch.js')];
}

/** Its directory outlives the switch unless holos stopped it (stopSwitch removes it). */
export async function observeSegment(layout: ProjectLayout): Promise<SegmentObserved> {
  const pid = await readPid(layout.switchPid);
  if (pid !== undefined && (await isOurProcess(pid, layout.dir))) return { pid };
  return (await exists(layout.networkDir)) ? { died: true } : {};
}

/** Starts the switch, detached (it outlives this holos, as QEMU does), once its pid file says it runs. */
export async function startSwitch(layout: ProjectLayout): Promise<number> {
  await mkdir(layout.networkDir, { recursive: true, mode: 0o700 });
  await mkdir(layout.dir, { recursive: true, mode: 0o700 });
  await rm(layout.switchPid, { force: true });
  const log = await open(layout.switchLog, 'a', 0o600);
  try {
    const child = spawn(process.execPath, [...switchProgram(), layout.dir, layout.switchPid], {
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
    });
    let exited: number | null | undefined;
    child.once('exit', (code) => (exited = code));
    child.unref();
    for (let waited = 0; waited < 10_000; waited += 20) {
      const seen = await observeSegment(layout);
      if (seen.pid !== undefined) return seen.pid;
      if (exited !== undefined) break;
      await sleep(20);
    }
    const said = (await readFile(layout.switchLog, 'utf8').catch(() => '')).trim().split('\n').slice(-3);
    child.kill('SIGKILL');
    throw new Error(
      `the switch of the private segment did not start${said.length > 0 ? `: ${said.join(' ')}` : ''} (log: ${layout.switchLog})`,
    );
  } finally {
    await log.close();
  }
}

/** Stops the switch (SIGTERM, then SIGKILL after 2 s) and removes its files. */
export async function stopSwitch(layout: ProjectLayout, pid: number | undefined): Promise<void> {
  if (pid !== undefined && (await isOurProcess(pid, layout.dir))) {
    process.kill(pid, 'SIGTERM');
    for (let waited = 0; waited < 2_000 && (await isOurProcess(pid, layout.dir)); waited += 20)
      await sleep(20);
    if (await isOurProcess(pid, layout.dir)) process.kill(pid, 'SIGKILL');
  }
  await rm(layout.networkDir, { recursive: true, force: true });
}

export const segment: Kind<'segment', SegmentSpec, SegmentObserved> = {
  kind: 'segment',

  desired({ project, layout }) {
    return project.instances.length === 0
      ? new Map()
      : new Map([[project.name, { project: project.name, instancesDir: layout.dir }]]);
  },

  /** A switch of the project on the host, for its stop when the file names no VM any more. */
  onHost: async (layout) => ((await exists(layout.networkDir)) ? [layout.project] : []),

  observe: (_name, _spec, layout) => observeSegment(layout),

  diff(name, spec, observed, ctx) {
    // It runs while some VM of the project will: one the verb starts, or one it leaves running
    // (also one the file no longer names, unless the verb stops or removes those).
    const inFile = new Map(ctx.project.instances.map((i) => [i.name, i.service]));
    const runs = (instance: string) => {
      const service = inFile.get(instance);
      const target = service === undefined ? ctx.strays : ctx.targetOf(service, instance);
      return (
        target === 'running' ||
        (target === undefined && ctx.observed('instance', instance)?.pid !== undefined)
      );
    };
    const needed = spec !== undefined && ctx.observedNames('instance').some(runs);
    const act = (
      verb: 'start' | 'stop' | 'remove',
      cause: 'missing' | 'drift' | 'requested',
      reason: string,
    ) => [{ kind: 'segment' as const, name, verb, cause, reason }];
    if (needed && observed.pid === undefined)
      return observed.died
        ? act('start', 'drift', 'the switch is not running: the VMs are cut off from each other')
        : act('start', 'missing', 'the switch of the private segment');
    if (needed || (observed.pid === undefined && !observed.died && spec)) return [];
    const everyoneGone = ctx.project.instances.every((i) => ctx.targetOf(i.service, i.name) === 'absent');
    if (everyoneGone || !spec) return act('remove', 'requested', 'no VM of the project is left');
    return observed.pid !== undefined ? act('stop', 'requested', 'no VM of the project runs') : [];
  },

  execute: {
    start: async (_input, ctx) => {
      await startSwitch(ctx.layout);
    },
    stop: ({ observed }, ctx) => stopSwitch(ctx.layout, observed.pid),
    remove: ({ observed }, ctx) => stopSwitch(ctx.layout, observed.pid),
  },
};
