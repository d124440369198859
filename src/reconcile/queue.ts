import type { InstanceResult } from './apply.js';

// watch's work queue (after controller-runtime's): triggers coalesce into passes, and each
// instance that keeps failing is held back on its own, exponentially. An error only the user
// can fix (a UserError: a host port in use, an image missing) is a terminal one: reported
// once, and not retried until the pass sees a different world for that instance (the file
// changed what it wants, or the host changed under it).

/** Runs `pass` whenever kicked; kicks during a pass coalesce into one more pass. */
export class Coalescer {
  #pending = false;
  #running: Promise<void> | undefined;
  readonly #pass: () => Promise<void>;

  constructor(pass: () => Promise<void>) {
    this.#pass = pass;
  }

  kick(): void {
    this.#pending = true;
    this.#running ??= this.#drain().finally(() => (this.#running = undefined));
  }

  async #drain(): Promise<void> {
    while (this.#pending) {
      this.#pending = false;
      await this.#pass();
    }
  }

  /** The pass in flight, if any. */
  idle(): Promise<void> {
    return this.#running ?? Promise.resolve();
  }
}

export interface BackoffOptions {
  /** An instance up at least this long counts as stable: its backoff starts over. */
  stableMs?: number;
  firstDelayMs?: number;
  maxDelayMs?: number;
  now?: () => number;
}

interface InstanceBackoff {
  delayMs: number;
  lastMs: number;
  /** A terminal error, and the world it happened in. */
  terminal?: { world: string; message: string };
}

/** Per-instance exponential backoff: 1s doubling up to 5m; terminal errors wait for a change. */
export class Backoff {
  readonly #state = new Map<string, InstanceBackoff>();
  readonly #stableMs: number;
  readonly #firstMs: number;
  readonly #maxMs: number;
  readonly #now: () => number;

  constructor(options: BackoffOptions = {}) {
    this.#stableMs = options.stableMs ?? 30_000;
    this.#firstMs = options.firstDelayMs ?? 1_000;
    this.#maxMs = options.maxDelayMs ?? 5 * 60_000;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Whether the instance must be left alone this pass. `world` is what the pass sees of it
   * (its desired spec and observed state): a terminal error holds it until that changes.
   */
  holds(instance: string, world: string): boolean {
    const s = this.#state.get(instance);
    if (!s) return false;
    if (s.terminal) {
      if (s.terminal.world === world) return true;
      s.terminal = undefined; // something changed: try again now
      s.delayMs = 0;
      return false;
    }
    return this.#now() < s.lastMs + s.delayMs;
  }

  /** The terminal error holding the instance, if any. */
  terminal(instance: string): string | undefined {
    return this.#state.get(instance)?.terminal?.message;
  }

  /**
   * The outcome of a pass for an instance. `startedVm`: the pass (re)started its VM; one that
   * comes back to be started again soon after is flapping, and backs off as if it had failed.
   */
  record(instance: string, result: InstanceResult, world: string, startedVm: boolean): void {
    if (result.status === 'held') return;
    const now = this.#now();
    const s = this.#state.get(instance) ?? { delayMs: 0, lastMs: -Infinity };
    if (result.status === 'failed' && result.terminal) {
      s.terminal = { world, message: result.error.message };
    } else if (result.status === 'failed' || startedVm) {
      const soon = now - s.lastMs < this.#stableMs;
      s.delayMs =
        result.status === 'failed' || soon
          ? Math.min(s.delayMs > 0 ? s.delayMs * 2 : this.#firstMs, this.#maxMs)
          : 0;
      s.lastMs = now;
    } else return;
    this.#state.set(instance, s);
  }

  remainingMs(instance: string): number {
    const s = this.#state.get(instance);
    return s && !s.terminal ? Math.max(0, s.lastMs + s.delayMs - this.#now()) : 0;
  }

  /** Milliseconds until the earliest instance held by a delay may go again. */
  nextWakeMs(): number | undefined {
    const now = this.#now();
    const waits = [...this.#state.values()]
      .filter((s) => !s.terminal)
      .map((s) => s.lastMs + s.delayMs - now)
      .filter((ms) => ms > 0);
    return waits.length > 0 ? Math.min(...waits) : undefined;
  }
}
