import { spawn } from 'node:child_process';
import { mkdir, open, readdir, readFile, rm, rmdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isOurQemu as isOurProcess, readPid } from '../observe/process.js';
import type { ProjectLayout } from '../state/layout.js';
import { sleep } from '../util/sleep.js';
import { exists } from '../util/fs.js';
import type { Kind } from './kind.js';
import { segmentSocketName } from '../net/switch.js';

// A switch network's segment: its switch process (net/switch.ts), one per network of the
// project, started before the first VM on that network and stopped once none of them runs. It
// is observed like a VM: a pid file whose process's command line names that pid file. A switch
// that died is drift: the plan starts it again, and it reconnects every running VM on its
// network (their QEMUs listen on), so none restarts.

export interface SegmentSpec {
  project: string;
  network: string;
  /** Where the VMs' sockets are: `instances/<project>/<instance>/<socketName>`. */
  instancesDir: string;
  socketName: string;
}

export interface SegmentObserved {
  /** The live switch's pid. */
  pid?: number;
  /** holos started a switch and did not stop it (its log is there), and none runs: it died (or was killed). */
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

/** Its log outlives the switch unless holos stopped it (stopSwitch removes it). */
export async function observeSegment(layout: ProjectLayout, network: string): Promise<SegmentObserved> {
  const files = layout.switchFiles(network);
  const pid = await readPid(files.pid);
  if (pid !== undefined && (await isOurProcess(pid, files.pid))) return { pid };
  return (await exists(files.log)) ? { died: true } : {};
}

/** Starts a network's switch, detached (it outlives this holos, as QEMU does), once its pid file says it runs. */
export async function startSwitch(layout: ProjectLayout, network: string): Promise<number> {
  const files = layout.switchFiles(network);
  await mkdir(layout.networkDir, { recursive: true, mode: 0o700 });
  await mkdir(layout.dir, { recursive: true, mode: 0o700 });
  await rm(files.pid, { force: true });
  const log = await open(files.log, 'a', 0o600);
  try {
    const argv = [...switchProgram(), layout.dir, files.pid, segmentSocketName(network)];
    const child = spawn(process.execPath, argv, { detached: true, stdio: ['ignore', log.fd, log.fd] });
    let exited: number | null | undefined;
    child.once('exit', (code) => (exited = code));
    child.unref();
    for (let waited = 0; waited < 10_000; waited += 20) {
      const seen = await observeSegment(layout, network);
      if (seen.pid !== undefined) return seen.pid;
      if (exited !== undefined) break;
      await sleep(20);
    }
    const said = (await readFile(files.log, 'utf8').catch(() => '')).trim().split('\n').slice(-3);
    child.kill('SIGKILL');
    throw new Error(
      `the switch of network ${network} did not start${said.length > 0 ? `: ${said.join(' ')}` : ''} (log: ${files.log})`,
    );
  } finally {
    await log.close();
  }
}

/** Stops a network's switch (SIGTERM, then SIGKILL after 2 s) and removes its files, and their directory once empty. */
export async function stopSwitch(
  layout: ProjectLayout,
  network: string,
  pid: number | undefined,
): Promise<void> {
  const files = layout.switchFiles(network);
  if (pid !== undefined && (await isOurProcess(pid, files.pid))) {
    process.kill(pid, 'SIGTERM');
    for (let waited = 0; waited < 2_000 && (await isOurProcess(pid, files.pid)); waited += 20)
      await sleep(20);
    if (await isOurProcess(pid, files.pid)) process.kill(pid, 'SIGKILL');
  }
  await Promise.all([rm(files.pid, { force: true }), rm(files.log, { force: true })]);
  await rmdir(layout.networkDir).catch(() => {}); // another network's switch is still there, or none ever was
}

/** The networks whose switch files are in the project's network directory. */
async function switchesOnHost(layout: ProjectLayout): Promise<string[]> {
  const names = await readdir(layout.networkDir).catch(() => []);
  return [
    ...new Set(
      names.flatMap((name) => {
        const match = /^switch(?:-([a-z0-9-]+))?\.(?:pid|log)$/.exec(name);
        return match ? [match[1] ?? 'default'] : [];
      }),
    ),
  ];
}

export const segment: Kind<'segment', SegmentSpec, SegmentObserved> = {
  kind: 'segment',

  desired({ project, layout }) {
    const switched = project.networks.filter(
      (n) =>
        n.driver === 'switch' && project.instances.some((i) => i.nics.some((nic) => nic.network === n.name)),
    );
    return new Map(
      switched.map((n) => [
        n.name,
        {
          project: project.name,
          network: n.name,
          instancesDir: layout.dir,
          socketName: segmentSocketName(n.name),
        },
      ]),
    );
  },

  /** Switches of the project on the host, for their stop when the file no longer needs them. */
  onHost: switchesOnHost,

  observe: (name, _spec, layout) => observeSegment(layout, name),

  diff(name, spec, observed, ctx) {
    // It runs while some VM on its network will: one the verb starts, or one it leaves running
    // (also one the file no longer names, unless the verb stops or removes those). A VM's
    // networks are the file's, or, for one it no longer names, its record's.
    const inFile = new Map(ctx.project.instances.map((i) => [i.name, i]));
    const onNetwork = (instance: string) => {
      const networks =
        inFile.get(instance)?.nics.map((n) => n.network) ??
        Object.keys(ctx.observed('instance', instance)?.applied?.spec.networks ?? {});
      return networks.includes(name);
    };
    const runs = (instance: string) => {
      const service = inFile.get(instance)?.service;
      const target = service === undefined ? ctx.strays : ctx.targetOf(service, instance);
      return (
        target === 'running' ||
        (target === undefined && ctx.observed('instance', instance)?.pid !== undefined)
      );
    };
    const needed = spec !== undefined && ctx.observedNames('instance').some((i) => onNetwork(i) && runs(i));
    const act = (
      verb: 'start' | 'stop' | 'remove',
      cause: 'missing' | 'drift' | 'requested',
      reason: string,
    ) => [{ kind: 'segment' as const, name, verb, cause, reason }];
    if (needed && observed.pid === undefined)
      return observed.died
        ? act('start', 'drift', 'its switch is not running: the VMs on it are cut off from each other')
        : act('start', 'missing', 'its switch');
    if (needed || (observed.pid === undefined && !observed.died && spec)) return [];
    const everyoneGone = ctx.project.instances.every((i) => ctx.targetOf(i.service, i.name) === 'absent');
    if (everyoneGone || !spec) return act('remove', 'requested', 'no VM on it is left');
    return observed.pid !== undefined ? act('stop', 'requested', 'no VM on it runs') : [];
  },

  execute: {
    start: async ({ action }, ctx) => {
      await startSwitch(ctx.layout, action.name);
    },
    stop: ({ action, observed }, ctx) => stopSwitch(ctx.layout, action.name, observed.pid),
    remove: ({ action, observed }, ctx) => stopSwitch(ctx.layout, action.name, observed.pid),
  },
};
