import { styleText } from 'node:util';
import { attachConsole } from '../access/console.js';
import { execInstance } from '../access/exec.js';
import { parseTail, printLogs, selectLogs } from '../access/logs.js';
import { sshConfig as renderSshConfig } from '../access/ssh-config.js';
import type { PendingAction } from '../access/inspect.js';
import { openAccessProject } from '../access/target.js';
import { parseDuration } from '../compose/units.js';
import { configuredQemu, programVersion } from '../qemu/binaries.js';
import { UserError } from '../errors.js';
import { stateDirOf, type GlobalOptions } from './context.js';
import packageJson from '../../package.json' with { type: 'json' };

// Getting into VMs: exec (SSH), console (serial), logs (serial log), ssh-config (for ssh and
// editors). They read the state dir and touch no VM's state.

const accessProject = (globals: GlobalOptions) =>
  openAccessProject(stateDirOf(globals), {
    cwd: process.cwd(),
    files: globals.file,
    projectName: globals.projectName,
  });

/** `-w`: a duration (`60s`, `5m`), `0` to try once. Rejects, so a caller awaits one way. */
export function waitOption(text: string): Promise<number> {
  const ms = parseDuration(text);
  return typeof ms === 'string' ? Promise.reject(new UserError(`-w ${text}: ${ms}`)) : Promise.resolve(ms);
}

export async function exec(
  globals: GlobalOptions,
  name: string,
  command: string[],
  options: { user?: string; wait: string; tty?: boolean },
): Promise<void> {
  const waitMs = await waitOption(options.wait);
  process.exitCode = await execInstance(await accessProject(globals), name, command, {
    user: options.user,
    waitMs,
    tty: options.tty,
  });
}

export async function console(globals: GlobalOptions, name: string): Promise<void> {
  const session = await attachConsole(await accessProject(globals), name);
  process.stderr.write(
    session.end === 'detached'
      ? `\nholos: detached from the serial console of ${session.instance}\n`
      : `\nholos: the serial console of ${session.instance} closed (the VM stopped)\n`,
  );
}

export async function logs(
  globals: GlobalOptions,
  names: string[],
  options: { follow?: boolean; tail: string; timestamps?: boolean },
): Promise<void> {
  const tail = parseTail(options.tail);
  if (options.timestamps && !options.follow)
    throw new UserError(
      '-t needs -f: serial logs carry no times, so holos can stamp only the lines it sees arrive',
    );
  const project = await accessProject(globals);
  const selection = await selectLogs(project, names);
  const stdout = process.stdout;
  const stop = new AbortController();
  const interrupt = () => stop.abort();
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  // A reader that went away (`| head`) ends the logs, quietly.
  stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') stop.abort();
  });
  try {
    await printLogs(project, selection, {
      tail,
      follow: options.follow ?? false,
      timestamps: options.timestamps ?? false,
      style: (color, text) => styleText(color, text, { stream: stdout }),
      signal: stop.signal,
      write: (text) =>
        new Promise<void>((resolve) => {
          if (stop.signal.aborted || stdout.write(text)) return resolve();
          const done = () => {
            stdout.off('drain', done);
            stop.signal.removeEventListener('abort', done);
            resolve();
          };
          stdout.once('drain', done);
          stop.signal.addEventListener('abort', done, { once: true });
        }),
    });
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
  }
}

export async function inspect(
  globals: GlobalOptions,
  name: string,
  options: { format: string },
): Promise<void> {
  if (options.format !== 'text' && options.format !== 'json')
    throw new UserError(`--format ${options.format}: use text or json`);
  const { inspectDetails, formatDetails } = await import('../access/inspect.js');
  const found = await inspectDetails(await accessProject(globals), name);
  const details = { ...found, pending: await pendingActions(globals, found.instance) };
  process.stdout.write(
    `${options.format === 'json' ? JSON.stringify({ schema_version: 1, ...details }) : formatDetails(details)}\n`,
  );
}

/**
 * What `holos plan` would do to the instance, read against the compose file here: [] when it
 * is as the file says, null when there is no file to compare with (a project known only from
 * the state dir, or a file that does not validate: holos validate says why).
 */
async function pendingActions(globals: GlobalOptions, instance: string): Promise<PendingAction[] | null> {
  const [{ openProject }, { planSession }, { targetsFor }, { activeServicesOf }] = await Promise.all([
    import('../session.js'),
    import('../reconcile/converge.js'),
    import('../reconcile/targets.js'),
    import('../compose/profiles.js'),
  ]);
  let session;
  try {
    session = await openProject(stateDirOf(globals), {
      cwd: process.cwd(),
      files: globals.file,
      projectName: globals.projectName,
    });
  } catch (error) {
    if (error instanceof UserError) return null;
    throw error;
  }
  if (!session.project.instances.some((i) => i.name === instance)) return null;
  const services = activeServicesOf(session.project);
  const { plan } = await planSession(session, targetsFor('plan', services));
  return plan.actions
    .filter((a) => (a.instance ?? a.name) === instance)
    .map((a) => ({ verb: a.verb, kind: a.kind, reason: a.reason }));
}

export async function sshConfig(globals: GlobalOptions): Promise<void> {
  process.stdout.write(await renderSshConfig(await accessProject(globals)));
}

/** `holos doctor`: the host's requirements, against the project here when there is one. */
export async function doctor(globals: GlobalOptions, options: { json?: boolean }): Promise<void> {
  const { diagnose, exitCodeOf, formatChecks, needsOf } = await import('../access/doctor.js');
  const { findComposeFiles, validateComposeFiles } = await import('../compose/load.js');
  const { resolveProject } = await import('../compose/resolve.js');
  let files: string[] | undefined;
  try {
    files = findComposeFiles(process.cwd(), globals.file);
  } catch {
    files = undefined; // no compose file here: the host's checks alone
  }
  const loaded = files && validateComposeFiles(files, { projectName: globals.projectName });
  const checks = await diagnose({
    stateDir: stateDirOf(globals),
    qemuSystem: configuredQemu().system,
    qemuImg: configuredQemu().img,
    ...(loaded?.ok && { needs: needsOf(resolveProject(loaded.loaded)) }),
  });
  if (loaded && !loaded.ok)
    checks.push({
      name: 'project',
      verdict: 'fail',
      detail: `${loaded.problems.length} problem${loaded.problems.length === 1 ? '' : 's'} in the compose file: ${loaded.problems[0]}`,
      fix: 'holos validate lists them all',
    });
  process.stdout.write(
    `${options.json ? JSON.stringify({ schema_version: 1, checks }) : formatChecks(checks)}\n`,
  );
  process.exitCode = exitCodeOf(checks);
}

/** `holos version`: holos's; with --json, node's and QEMU's (null when QEMU is missing). */
export async function version(options: { json?: boolean }): Promise<void> {
  if (!options.json) {
    process.stdout.write(`holos ${packageJson.version}\n`);
    return;
  }
  const found = await programVersion(configuredQemu().system);
  const qemuVersion = 'version' in found ? (/version (\S+)/.exec(found.version)?.[1] ?? null) : null;
  const versions = {
    schema_version: 1,
    holos: packageJson.version,
    node: process.versions.node,
    qemu: qemuVersion,
  };
  process.stdout.write(`${JSON.stringify(versions)}\n`);
}

/** `holos devices`: the host's PCI devices by IOMMU group (HOLOS_SYSFS points at another sysfs). */
export async function devices(options: { gpu?: boolean; json?: boolean }): Promise<void> {
  const { formatDevices, readPciDevices, readPciNames } = await import('../access/devices.js');
  const found = await readPciDevices(process.env.HOLOS_SYSFS || '/sys');
  if (options.json) {
    process.stdout.write(`${JSON.stringify({ schema_version: 1, devices: found })}\n`);
    return;
  }
  process.stdout.write(`${formatDevices(found, await readPciNames(), options.gpu ?? false)}\n`);
}
