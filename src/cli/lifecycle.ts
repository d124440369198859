import type { Command } from 'commander';
import type { GlobalOptions } from './context.js';

// The reconciler's verbs. Each names a target per service; the pipeline does the rest.

interface MutateOptions {
  dryRun?: boolean;
  json?: boolean;
  wait: boolean;
  lockTimeout?: string;
  timeout?: string;
}

type TargetsFor = (services: string[]) => import('../reconcile/plan.js').Targets;

async function durationOption(text: string | undefined, flag: string): Promise<number | undefined> {
  if (text === undefined) return undefined;
  const { parseDuration } = await import('../compose/units.js');
  const { UserError } = await import('../errors.js');
  const ms = parseDuration(text);
  if (typeof ms === 'string') throw new UserError(`${flag} ${text}: ${ms}`);
  return ms;
}

/** Services named on the command line, checked against the file; none means all. */
async function chooseServices(all: string[], named: string[]): Promise<string[]> {
  const { UserError } = await import('../errors.js');
  const unknown = named.filter((n) => !all.includes(n));
  if (unknown.length > 0)
    throw new UserError(`no service ${unknown.join(', ')} in the file; services: ${all.join(', ')}`);
  return named.length > 0 ? named : all;
}

interface MutateExtra {
  showStatus?: boolean;
  /** Record the named services as stopped (true) or not (false), for watch. */
  stopped?: boolean;
  /** `up --take-over`. */
  takeOver?: boolean;
  /** `down <project>`: a project of the state dir, without its compose file. */
  project?: string;
  /** `down`: forget the project afterwards; with `--volumes`, its volumes, keys and record too. */
  forget?: { volumes: boolean };
}

/**
 * The project a verb acts on: the compose file's, or (`down <project>`) one known only from the
 * state dir. `open` reads its record; changing verbs call it under the project's lock.
 */
async function projectOf(
  globals: GlobalOptions,
  extra: MutateExtra,
): Promise<{
  services: string[];
  layout: import('../resources/layout.js').ProjectLayout;
  open: () => Promise<import('../reconcile/converge.js').Session>;
}> {
  const { stateDirOf } = await import('./context.js');
  const stateDir = stateDirOf(globals);
  if (extra.project !== undefined) {
    const { UserError } = await import('../errors.js');
    const { emptyProject, projectsIn } = await import('../reconcile/project.js');
    const name = extra.project;
    const known = await projectsIn(stateDir);
    if (!known.includes(name))
      throw new UserError(
        `no project ${name} in ${stateDir}${known.length > 0 ? ` (projects: ${known.join(', ')})` : ''}`,
      );
    const session = emptyProject(name, stateDir);
    return { services: [], layout: session.layout, open: () => Promise.resolve(session) };
  }
  const { loadCompose } = await import('../compose/load.js');
  const { openLoaded } = await import('../reconcile/converge.js');
  const { projectLayout } = await import('../resources/layout.js');
  const loaded = loadCompose({ cwd: process.cwd(), file: globals.file, projectName: globals.projectName });
  return {
    services: Object.keys(loaded.compose.services),
    layout: projectLayout(stateDir, loaded.project),
    open: () => openLoaded(stateDir, loaded, { takeOver: extra.takeOver }),
  };
}

async function mutate(
  globals: GlobalOptions,
  options: MutateOptions,
  named: string[],
  targetsFor: TargetsFor,
  extra: MutateExtra = {},
): Promise<void> {
  const { createLogger } = await import('./context.js');
  const { planSession, converge } = await import('../reconcile/converge.js');
  const { acquireLock } = await import('../reconcile/lock.js');
  const { stamp } = await import('../reconcile/events.js');
  const { eventPrinter, formatPlan } = await import('./output.js');
  const target = await projectOf(globals, extra);
  const services = await chooseServices(target.services, named);
  const targets = targetsFor(services);
  if (options.dryRun) {
    const session = await target.open();
    // stdout is the plan alone, also with --json: the notice goes to stderr.
    if (session.notice) console.error(`holos: warning: ${session.notice}`);
    const { plan } = await planSession(session, targets);
    console.log(options.json ? JSON.stringify(plan) : formatPlan(plan));
    return;
  }
  const logger = await createLogger(globals);
  const print = eventPrinter(options.json ?? false);
  const emit: Parameters<typeof converge>[2]['emit'] = (event) => {
    logger.info(stamp(event), event.type);
    print(event);
  };
  const warn = (message: string) => emit({ type: 'warning', message });
  const project = target.layout.project;
  const lock = await acquireLock(target.layout.lock, project, {
    noWait: !options.wait,
    timeoutMs: await durationOption(options.lockTimeout, '--lock-timeout'),
    onWait: (pid) =>
      emit({
        type: 'waiting',
        message: `waiting for holos (pid ${pid}) to finish changing project ${project}; --no-wait fails instead`,
      }),
  });
  const timeoutMs = await durationOption(options.timeout, '--timeout');
  try {
    // Under the lock: the record read here is the one the holos we waited for left behind.
    const session = await target.open();
    if (session.notice) warn(session.notice);
    await converge(session, targets, {
      emit,
      warn,
      signal: timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs),
      healthBypass: process.env.HOLOS_HEALTH_BYPASS === '1',
      ...(extra.stopped !== undefined && { record: { services, stopped: extra.stopped } }),
    });
    if (extra.forget) {
      const { forgetProject } = await import('../reconcile/project.js');
      await forgetProject(session.layout, extra.forget.volumes);
    }
  } finally {
    await lock.release();
  }
  if (extra.showStatus && !options.json) await printStatus(target.layout);
}

async function printStatus(layout: import('../resources/layout.js').ProjectLayout): Promise<void> {
  const { projectStatus } = await import('../reconcile/status.js');
  const rows = await projectStatus(layout);
  console.log(statusTable(rows, false, await import('./output.js')));
}

function statusTable(
  rows: import('../reconcile/status.js').InstanceStatus[],
  withProject: boolean,
  output: typeof import('./output.js'),
): string {
  if (rows.length === 0) return 'no instances';
  const head = [
    ...(withProject ? ['PROJECT'] : []),
    'SERVICE',
    'INSTANCE',
    'STATE',
    'HEALTH',
    'IP',
    'UPTIME',
    'PORTS',
  ];
  return output.table([
    head,
    ...rows.map((r) => [
      ...(withProject ? [r.project] : []),
      r.service,
      r.instance,
      r.state,
      r.health || '-',
      r.ip ?? '-',
      output.uptime(r.started_at ?? undefined) || '-',
      [
        ...(r.ssh_port ? [`127.0.0.1:${r.ssh_port}->22/tcp`] : []),
        ...r.ports.map((p) => `${p.host_ip}:${p.host_port}->${p.guest_port}/${p.protocol}`),
      ].join(', ') || '-',
    ]),
  ]);
}

const mutating = (command: Command) =>
  command
    .option('--dry-run', 'print the plan and change nothing')
    .option('--json', 'print events (or, with --dry-run, the plan) as JSON, one object per line')
    .option('--no-wait', 'fail at once if another holos is changing this project')
    .option('--lock-timeout <duration>', 'give up waiting for another holos after this long');

export function registerLifecycleCommands(program: Command, globals: () => GlobalOptions): void {
  for (const name of ['up', 'apply']) {
    mutating(
      program
        .command(name)
        .description(
          name === 'up'
            ? 'create and start every VM of the project, changing only what differs from the file'
            : 'the same as up: converge the host to the file',
        )
        .option('--timeout <duration>', 'give up waiting for healthchecks after this long')
        .option(
          '--take-over',
          "manage the project from this file although another compose file made it (its VMs, disks and volumes become this file's)",
        ),
    ).action(async (options: MutateOptions & { takeOver?: boolean }) => {
      await mutate(
        globals(),
        options,
        [],
        (services) => ({
          services: Object.fromEntries(services.map((s) => [s, 'running'])),
          strays: 'absent',
        }),
        { showStatus: true, stopped: false, takeOver: options.takeOver ?? false },
      );
    });
  }

  mutating(
    program
      .command('start')
      .argument('[service...]', 'services to start (default: all)')
      .description('start stopped VMs of existing instances; others are left alone'),
  ).action(async (named: string[], options: MutateOptions) => {
    await mutate(
      globals(),
      options,
      named,
      (services) => ({
        services: Object.fromEntries(services.map((s) => [s, 'running'])),
        existingOnly: true,
      }),
      { stopped: false },
    );
  });

  mutating(
    program
      .command('stop')
      .argument('[service...]', 'services to stop (default: all)')
      .description('stop VMs gracefully (ACPI, then SIGTERM after stop_grace_period); disks are kept'),
  ).action(async (named: string[], options: MutateOptions) => {
    await mutate(
      globals(),
      options,
      named,
      (services) => ({
        services: Object.fromEntries(services.map((s) => [s, 'stopped'])),
        ...(named.length === 0 && { strays: 'stopped' as const }),
      }),
      { stopped: true },
    );
  });

  mutating(
    program
      .command('down')
      .argument('[project]', 'a project in the state dir (default: the one of the compose file)')
      .option('-v, --volumes', "also delete the project's named volumes and keys: nothing of it is left")
      .description('stop and remove every VM of the project; named volumes and keys stay'),
  ).action(async (project: string | undefined, options: MutateOptions & { volumes?: boolean }) => {
    await down(globals(), project, options);
  });

  program
    .command('plan')
    .description('print what up would do, and change nothing')
    .option('--json', 'the plan as JSON')
    .option('--detailed-exitcode', 'exit 0 when there is nothing to do, 2 when there are changes')
    .action(async (options: { json?: boolean; detailedExitcode?: boolean }) => {
      const { stateDirOf } = await import('./context.js');
      const { openProject, planSession } = await import('../reconcile/converge.js');
      const { formatPlan } = await import('./output.js');
      const g = globals();
      const session = await openProject(stateDirOf(g), {
        cwd: process.cwd(),
        file: g.file,
        projectName: g.projectName,
      });
      if (session.notice) console.error(`holos: warning: ${session.notice}`);
      const services = session.project.services.map((s) => s.name);
      const { plan } = await planSession(session, {
        services: Object.fromEntries(services.map((s) => [s, 'running'])),
        strays: 'absent',
      });
      console.log(options.json ? JSON.stringify(plan) : formatPlan(plan));
      if (options.detailedExitcode && plan.actions.length > 0) process.exitCode = 2;
    });

  program
    .command('watch')
    .argument('[service...]', 'services to keep converged (default: the whole project)')
    .description(
      'converge, then keep converging when the file changes or a VM stops; Ctrl-C leaves the VMs running',
    )
    .option('--resync <duration>', 'also converge this often, whatever happens', '30s')
    .option('--json', 'print events as JSON, one object per line')
    .action(async (named: string[], options: { resync: string; json?: boolean }) => {
      await watchVerb(globals(), named, options);
    });

  program
    .command('ps')
    .description(
      'list the VMs of the project (of every project with --all, or when there is no compose file)',
    )
    .option('-a, --all', 'every project in the state dir')
    .option('--format <format>', 'table or json', 'table')
    .action(async (options: { all?: boolean; format: string }) => {
      await ps(globals(), options);
    });
}

/** One path for `down` and `down <project>`: every instance absent, then the project forgotten. */
async function down(
  g: GlobalOptions,
  name: string | undefined,
  options: MutateOptions & { volumes?: boolean },
): Promise<void> {
  const volumes = options.volumes ?? false;
  await mutate(
    g,
    options,
    [],
    (services) => ({
      services: Object.fromEntries(services.map((s) => [s, 'absent'])),
      strays: 'absent',
      removeVolumes: volumes,
    }),
    { ...(name !== undefined && { project: name }), forget: { volumes } },
  );
}

async function ps(g: GlobalOptions, options: { all?: boolean; format: string }): Promise<void> {
  const { stateDirOf } = await import('./context.js');
  const { UserError } = await import('../errors.js');
  const { projectsIn } = await import('../reconcile/project.js');
  const { projectStatus } = await import('../reconcile/status.js');
  const { projectLayout } = await import('../resources/layout.js');
  if (options.format !== 'table' && options.format !== 'json')
    throw new UserError(`--format ${options.format}: use table or json`);
  const stateDir = stateDirOf(g);
  let projects: string[];
  if (options.all) projects = await projectsIn(stateDir);
  else {
    const { findComposeFile } = await import('../compose/load.js');
    let file: string | undefined;
    try {
      file = findComposeFile(process.cwd(), g.file);
    } catch (error) {
      if (g.file || g.projectName) throw error;
    }
    if (file || g.projectName) {
      const { openProject } = await import('../reconcile/converge.js');
      projects = [
        g.projectName && !file
          ? g.projectName
          : (await openProject(stateDir, { cwd: process.cwd(), file, projectName: g.projectName })).project
              .name,
      ];
    } else projects = await projectsIn(stateDir);
  }
  const rows = (await Promise.all(projects.map((p) => projectStatus(projectLayout(stateDir, p))))).flat();
  if (options.format === 'json') console.log(JSON.stringify({ schema_version: 1, instances: rows }));
  else
    console.log(statusTable(rows, projects.length > 1 || options.all === true, await import('./output.js')));
}

async function watchVerb(
  g: GlobalOptions,
  named: string[],
  options: { resync: string; json?: boolean },
): Promise<void> {
  const { stateDirOf, createLogger } = await import('./context.js');
  const { openProject } = await import('../reconcile/converge.js');
  const { watch } = await import('../reconcile/watch.js');
  const { stamp } = await import('../reconcile/events.js');
  const { eventPrinter } = await import('./output.js');
  const stateDir = stateDirOf(g);
  const where = { cwd: process.cwd(), file: g.file, projectName: g.projectName };
  const { project } = await openProject(stateDir, where);
  await chooseServices(
    project.services.map((s) => s.name),
    named,
  );
  const resyncMs = (await durationOption(options.resync, '--resync'))!;
  const logger = await createLogger(g);
  const print = eventPrinter(options.json ?? false);
  const controller = new AbortController();
  const stop = () => {
    if (!options.json) console.error('watch: stopping after the action in flight; the VMs keep running');
    controller.abort();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await watch({
    stateDir,
    ...where,
    services: named,
    resyncMs,
    signal: controller.signal,
    healthBypass: process.env.HOLOS_HEALTH_BYPASS === '1',
    emit: (event) => {
      logger.info(stamp(event), event.type);
      print(event);
    },
    warn: (message) => {
      logger.warn(message);
      print({ type: 'warning', message });
    },
  });
}
