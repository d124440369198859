import { mainUnitName } from '../cloudinit/main-service.js';
import { sleep } from '../util/sleep.js';
import { HostKeyMismatch, runOnce, type SshTarget } from './exec.js';

// depends_on's service_completed_successfully: the dependency's main service (the systemd unit
// cloudinit/main-service.ts writes, which runs its program once a boot and is not restarted) has
// ended with status 0. systemd is asked over SSH until the unit has ended this boot: before
// cloud-init enables it the unit is unknown or inactive with no exit time, which is "not yet".

/** What `systemctl show` says of the main service. */
export type MainServiceState = { ended: false; why: string } | { ended: true; ok: boolean; why: string };

/** The properties asked for; their values decide. */
export const showCommand = `systemctl show -p LoadState -p ActiveState -p Result -p ExecMainCode -p ExecMainStatus -p ExecMainExitTimestampMonotonic ${mainUnitName}`;

/** Reads `systemctl show`'s `Key=value` lines. Pure. */
export function mainServiceState(show: string): MainServiceState {
  const props = new Map(
    show
      .split('\n')
      .filter((line) => line.includes('='))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1).trim()]),
  );
  const active = props.get('ActiveState') ?? '';
  const exitedAt = Number(props.get('ExecMainExitTimestampMonotonic') ?? '0');
  if (props.get('LoadState') === 'not-found')
    return { ended: false, why: 'its main service is not set up yet' };
  if (active === 'active' || active === 'activating' || active === 'reloading')
    return { ended: false, why: 'its main service is running' };
  if (!(exitedAt > 0)) return { ended: false, why: 'its main service has not started yet' };
  const status = props.get('ExecMainStatus') ?? '';
  // ExecMainCode is CLD_EXITED (1) for an exit; otherwise the status is a signal number.
  const signalled = props.get('ExecMainCode') !== undefined && props.get('ExecMainCode') !== '1';
  if (props.get('Result') === 'success' && status === '0' && !signalled)
    return { ended: true, ok: true, why: 'its main service exited 0' };
  return {
    ended: true,
    ok: false,
    why: signalled
      ? `its main service was killed by signal ${status}`
      : `its main service exited with status ${status || '?'} (${props.get('Result') ?? 'unknown'})`,
  };
}

export interface CompletionOptions {
  /** Stop waiting (the apply was cancelled or timed out). */
  signal?: AbortSignal;
  /** Between two questions (default 2 s). */
  intervalMs?: number;
  /** Told each time the answer is "not yet" or the guest does not answer. */
  onWait?: (why: string) => void;
}

/** Resolves when the main service has exited 0; rejects with why when it ended otherwise. */
export async function waitCompleted(target: SshTarget, opts: CompletionOptions = {}): Promise<void> {
  for (;;) {
    opts.signal?.throwIfAborted();
    let state: MainServiceState;
    try {
      const result = await runOnce(target, showCommand, 30_000);
      state =
        result.code === 0
          ? mainServiceState(result.stdout)
          : { ended: false, why: `systemctl show: ${`${result.stdout}${result.stderr}`.trim()}` };
    } catch (error) {
      if (error instanceof HostKeyMismatch) throw error;
      state = { ended: false, why: (error as Error).message };
    }
    if (state.ended) {
      if (state.ok) return;
      throw new Error(state.why);
    }
    opts.onWait?.(state.why);
    await sleep(opts.intervalMs ?? 2000, opts.signal);
  }
}
