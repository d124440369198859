import { UserError } from '../errors.js';
import { isOurQemu, readPid } from '../observe/process.js';
import { QmpClient } from '../observe/qmp.js';
import { formatDuration } from '../compose/units.js';
import { sleep } from '../util/sleep.js';

// Starting and stopping one QEMU process. QEMU runs with -daemonize, so it is not our child:
// its exit is seen through /proc, and it outlives holos by design.

const launchTimeoutMs = 60_000;
const pollMs = 100;
/** How long a stop gives QMP to answer, and SIGTERM, then SIGKILL, to end QEMU. */
const stopWaits = { qmpMs: 2_000, signalMs: 5_000 };

/**
 * Runs QEMU with -daemonize and returns the daemon's pid. QEMU exits non-zero before
 * daemonizing when it cannot start (a port in use, a bad argument): that becomes an error
 * with what QEMU said (apply names the instance).
 */
export async function launch(
  qemu: string,
  args: readonly string[],
  pidFile: string,
  marker: string,
): Promise<number> {
  // execa loads only when something starts, keeping read-only verbs quick.
  const { execa } = await import('execa');
  const result = await execa(qemu, args, { reject: false, timeout: launchTimeoutMs, stdin: 'ignore' });
  if (result.failed) {
    const said = `${result.stderr}`.trim().split('\n').filter(Boolean);
    const why = said.length > 0 ? said.join('; ') : (result.shortMessage ?? `exit status ${result.exitCode}`);
    throw new UserError(`QEMU did not start: ${why}`);
  }
  const pid = await readPid(pidFile);
  if (pid === undefined || !(await isOurQemu(pid, marker)))
    throw new UserError('QEMU started but exited at once; see its serial log');
  return pid;
}

/** Resolves true once the process is gone, false if it still runs after `ms`. */
export async function waitForExit(pid: number, marker: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (!(await isOurQemu(pid, marker))) return true;
    if (Date.now() >= deadline) return false;
    await sleep(pollMs);
  }
}

export type StopOutcome = 'not-running' | 'powered-down' | 'terminated' | 'killed';

export interface StopRequest {
  pid: number;
  /** Something unique to this instance in QEMU's command line (its QMP socket path). */
  marker: string;
  qmpSocket: string;
  graceMs: number;
  /** Told each step, for the log and the events. */
  step: (message: string) => void;
  /** Instead of stopWaits: tests that wait out each step wait less. */
  waits?: typeof stopWaits;
}

/** ACPI power button, then up to the grace period, then SIGTERM, then SIGKILL. */
export async function stopGracefully(request: StopRequest): Promise<StopOutcome> {
  const { pid, marker, graceMs, step } = request;
  const waits = request.waits ?? stopWaits;
  if (!(await isOurQemu(pid, marker))) return 'not-running';
  try {
    const qmp = await QmpClient.connect(request.qmpSocket, { timeoutMs: waits.qmpMs });
    try {
      await qmp.execute('system_powerdown');
    } finally {
      qmp.close();
    }
    step(`ACPI shutdown requested; waiting up to ${formatDuration(graceMs)}`);
  } catch (error) {
    step(`QMP did not take the shutdown request (${(error as Error).message})`);
  }
  if (await waitForExit(pid, marker, graceMs)) return 'powered-down';
  step(`still running after ${formatDuration(graceMs)}; sending SIGTERM`);
  signal(pid, 'SIGTERM');
  if (await waitForExit(pid, marker, waits.signalMs)) return 'terminated';
  step(`still running ${formatDuration(waits.signalMs)} after SIGTERM; sending SIGKILL`);
  signal(pid, 'SIGKILL');
  await waitForExit(pid, marker, waits.signalMs);
  return 'killed';
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}
