import type { Healthcheck } from '../compose/schema.js';
import { formatDuration } from '../compose/units.js';
import { shellCommand } from '../util/shell.js';
import { sleep } from '../util/sleep.js';
import { HostKeyMismatch, runOnce, type SshTarget } from './exec.js';

// Healthchecks run inside the guest over SSH, with docker's semantics: failures during
// start_period do not count; `retries` consecutive failures after it mean unhealthy.

export interface ProbeResult {
  healthy: boolean;
  /** What the probe printed, or why it could not run. */
  output: string;
}

export async function probe(target: SshTarget, check: Healthcheck): Promise<ProbeResult> {
  try {
    const result = await runOnce(target, shellCommand(check.test), check.timeout);
    const output = `${result.stdout}${result.stderr}`.trim();
    return { healthy: result.code === 0, output: output || `exit status ${result.code ?? result.signal}` };
  } catch (error) {
    if (error instanceof HostKeyMismatch) throw error;
    return { healthy: false, output: (error as Error).message };
  }
}

export interface GateOptions {
  /** Stop waiting (the apply was cancelled or timed out). */
  signal?: AbortSignal;
  /** Told about each failed probe. */
  onProbe?: (result: ProbeResult, attempt: number) => void;
}

/** Resolves when the probe passes; rejects with the last output once the retries are spent. */
export async function waitHealthy(
  target: SshTarget,
  check: Healthcheck,
  opts: GateOptions = {},
): Promise<void> {
  const startedAt = Date.now();
  let failures = 0;
  for (let attempt = 1; ; attempt++) {
    opts.signal?.throwIfAborted();
    const result = await probe(target, check);
    if (result.healthy) return;
    opts.onProbe?.(result, attempt);
    if (Date.now() - startedAt >= check.start_period) failures++;
    if (failures >= check.retries)
      throw new Error(
        `unhealthy after ${failures} failed probe${failures === 1 ? '' : 's'} (interval ${formatDuration(check.interval)}): ${result.output}`,
      );
    // Compose's start_interval: quicker probes while the service is still starting.
    const starting = Date.now() - startedAt < check.start_period;
    await sleep(
      starting && check.start_interval !== undefined ? check.start_interval : check.interval,
      opts.signal,
    );
  }
}
