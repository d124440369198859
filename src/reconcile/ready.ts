import { formatDuration } from '../compose/units.js';
import type { Emit } from '../events.js';
import { inspect, phaseOf, type InstanceState, type Phase } from '../state/inspect.js';
import type { ProjectLayout } from '../state/layout.js';
import { sleep } from '../util/sleep.js';

// `up --wait`: after the apply, watch every instance of the stack until it is ready, reading
// its phase where `ps` reads it (state/inspect.ts), and say each change as it happens. Ready
// means cloud-init finished the first boot without errors, or, on a later boot, finished again.

/** Phases on the way to ready (a QMP that did not answer in time, too): anything else ends the wait. */
const onTheWay = new Set<Phase>(['booting', 'provisioning', 'unresponsive']);

/**
 * cloud-init said it finished, and holos's line (written a second later) has not come this
 * long after: the seed's runcmd never ran, so cloud-init did not apply the user-data.
 */
const markerGraceMs = 60_000;

export interface WaitOptions {
  emit: Emit;
  /** Give up after this long (`--wait-timeout`); undefined waits as long as it takes. */
  timeoutMs?: number;
  pollMs?: number;
  /** How long after cloud-init's end holos's line may take (default markerGraceMs). */
  markerGraceMs?: number;
  signal?: AbortSignal;
}

/**
 * Waits until every instance named is ready. Returns one line per instance that did not get
 * there (degraded, failed, not running, or still on its way at the timeout), each saying why
 * and where to look.
 */
export async function waitUntilReady(
  layout: ProjectLayout,
  instances: readonly string[],
  options: WaitOptions,
): Promise<string[]> {
  const started = Date.now();
  const deadline = options.timeoutMs === undefined ? Infinity : started + options.timeoutMs;
  const pollMs = options.pollMs ?? 1_000;
  const last = new Map<string, Phase>();
  const finishedSeenAt = new Map<string, number>();
  const waiting = new Set(instances);
  const problems: string[] = [];

  const report = (name: string, state: InstanceState, phase: Phase, errors?: string[]) => {
    if (last.get(name) === phase) return;
    last.set(name, phase);
    // Elapsed since this boot's QEMU started (the wait may begin long after).
    const since = state.applied?.startedAt ? Date.parse(state.applied.startedAt) : started;
    options.emit({
      type: 'phase',
      instance: name,
      phase,
      elapsed_ms: Math.max(0, Date.now() - since),
      since: new Date(since).toISOString(),
      ...(errors && errors.length > 0 && { errors }),
    });
  };
  const done = (name: string, problem?: string) => {
    waiting.delete(name);
    if (problem) problems.push(problem);
  };

  for (;;) {
    await Promise.all(
      [...waiting].map(async (name) => {
        const state = await inspect(name, layout.instance(name), { qmp: true, boot: 'phase' });
        let phase = phaseOf(state);
        let errors = state.boot?.verdict?.errors;
        if (phase === 'provisioning' && state.boot?.thisBoot.finished) {
          const seen = finishedSeenAt.get(name) ?? Date.now();
          finishedSeenAt.set(name, seen);
          if (Date.now() - seen >= (options.markerGraceMs ?? markerGraceMs)) {
            phase = 'failed';
            errors = ["it finished without running holos's first-boot step: the user-data was not applied"];
          }
        }
        report(name, state, phase, errors);
        const logs = `see holos logs ${name}`;
        if (phase === 'ready') done(name);
        else if (phase === 'degraded' || phase === 'failed')
          done(
            name,
            `${name} is ${phase}: cloud-init: ${(errors ?? []).join('; ') || 'no reason given'}; ${logs}`,
          );
        else if (!onTheWay.has(phase)) done(name, `${name} is ${phase}, not running; ${logs}`);
      }),
    );
    if (waiting.size === 0) return problems;
    if (Date.now() >= deadline) {
      for (const name of waiting)
        problems.push(
          `${name} is still ${last.get(name)} after ${formatDuration(options.timeoutMs!)}; a longer --wait-timeout waits longer`,
        );
      return problems;
    }
    await sleep(Math.min(pollMs, Math.max(0, deadline - Date.now())), options.signal);
  }
}
