import type { createLogUpdate } from 'log-update';
import type { HolosEvent } from '../events.js';
import { formatBytes, formatDuration } from '../compose/units.js';

// Download progress as docker pull shows it: on a terminal one live line per download, redrawn
// in place (log-update) beneath the lines other events print; elsewhere (a log file, CI) a
// plain line every few seconds. Both read the same `download` events that --json prints.

type Download = Extract<HolosEvent, { type: 'download' }>;
type PhaseChange = Extract<HolosEvent, { type: 'phase' }>;

/** Phases an instance passes through on its way to ready; the others end the wait. */
const passing = new Set(['booting', 'provisioning', 'unresponsive']);

/** `web-0: provisioning, 42s` on the way; `web-0: ready after 1m32s` at the end (with the reason). */
export function phaseLine(event: PhaseChange, now = Date.parse(event.since) + event.elapsed_ms): string {
  const elapsed = formatDuration(Math.floor(Math.max(0, now - Date.parse(event.since)) / 1000) * 1000);
  if (passing.has(event.phase)) return `${event.instance}: ${event.phase}, ${elapsed}`;
  const why = event.errors?.length ? `: ${event.errors.join('; ')}` : '';
  return `${event.instance}: ${event.phase} after ${elapsed}${why}`;
}

const plainEveryMs = 5_000;

/** `image debian:12: 120.0 MiB of 312.4 MiB (38%) at 38.1 MiB/s, 5s left`. */
export function downloadLine(event: Download): string {
  const fetched = event.received - event.resumed_from;
  const rate = event.elapsed_ms > 0 ? (fetched * 1000) / event.elapsed_ms : 0;
  const speed = rate > 0 ? ` at ${formatBytes(rate)}/s` : '';
  const subject = `image ${event.image}`;
  if (event.done)
    return `${subject}: downloaded ${formatBytes(fetched)}${speed}${event.resumed_from > 0 ? ` (resumed at ${formatBytes(event.resumed_from)})` : ''}`;
  if (event.total === undefined) return `${subject}: ${formatBytes(event.received)}${speed}`;
  const percent = Math.floor((event.received / Math.max(event.total, 1)) * 100);
  const left =
    rate > 0 ? `, ${formatDuration(Math.ceil((event.total - event.received) / rate) * 1000)} left` : '';
  return `${subject}: ${formatBytes(event.received)} of ${formatBytes(event.total)} (${percent}%)${speed}${left}`;
}

export interface Printer {
  /** A line that stays (an event's line). */
  line(text: string): void;
  download(event: Download): void;
  /** `up --wait`: on a terminal a live line per instance with its phase and a running clock. */
  phase(event: PhaseChange): void;
}

export function progressPrinter(stream: NodeJS.WriteStream = process.stderr): Printer {
  // A terminal of no size (a pty nobody sized) would show log-update nothing: plain lines there too.
  if (!stream.isTTY || !stream.rows) {
    const lastAt = new Map<string, number>();
    return {
      line: (text) => stream.write(`${text}\n`),
      download(event) {
        const now = Date.now();
        if (!event.done && now - (lastAt.get(event.image) ?? 0) < plainEveryMs) return;
        lastAt.set(event.image, now);
        stream.write(`${downloadLine(event)}\n`);
      },
      phase: (event) => stream.write(`${phaseLine(event)}\n`),
    };
  }
  // log-update loads with the first download: a verb that downloads nothing never needs it, and
  // until it is there, the live lines wait in `live` and the other lines are written as they are.
  const live = new Map<string, string | (() => string)>();
  let update: ReturnType<typeof createLogUpdate> | undefined;
  let loading: Promise<void> | undefined;
  // Phases show a running clock: redrawn every second while one is on its way.
  let ticking: NodeJS.Timeout | undefined;
  const redraw = () => {
    if (!update) return;
    if (live.size > 0) update([...live.values()].map((l) => (typeof l === 'string' ? l : l())).join('\n'));
    else update.clear();
  };
  const load = () =>
    (loading ??= import('log-update').then(({ createLogUpdate }) => {
      update = createLogUpdate(stream, { showCursor: true });
      redraw();
    }));
  return {
    line(text) {
      update?.clear();
      stream.write(`${text}\n`);
      redraw();
    },
    download(event) {
      if (!event.done) {
        live.set(event.image, downloadLine(event));
        void load();
        redraw();
        return;
      }
      live.delete(event.image);
      update?.clear();
      stream.write(`${downloadLine(event)}\n`);
      redraw();
    },
    phase(event) {
      const key = `phase:${event.instance}`;
      if (passing.has(event.phase)) {
        live.set(key, () => phaseLine(event, Date.now()));
        ticking ??= setInterval(redraw, 1_000).unref();
        void load();
        redraw();
        return;
      }
      live.delete(key);
      if (ticking && ![...live.keys()].some((k) => k.startsWith('phase:'))) {
        clearInterval(ticking);
        ticking = undefined;
      }
      update?.clear();
      stream.write(`${phaseLine(event)}\n`);
      redraw();
    },
  };
}
