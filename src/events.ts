import type { Action } from './resources/kind.js';

// Every action emits events; the human renderer and --json both read them (DESIGN.md §6).
// The JSON form is a contract: fields may be added, never renamed or removed.

export type HolosEvent =
  | { type: 'plan'; project: string; actions: number }
  | {
      type: 'action';
      phase: 'start' | 'done' | 'failed';
      action: Action;
      duration_ms?: number;
      error?: string;
    }
  | { type: 'step'; instance: string; message: string }
  | {
      type: 'health';
      phase: 'waiting' | 'probe-failed' | 'healthy' | 'unhealthy' | 'bypassed';
      service: string;
      instance?: string;
      output?: string;
      duration_ms?: number;
    }
  /** depends_on's service_completed_successfully: an instance's main service ran to its end. */
  | {
      type: 'completion';
      phase: 'waiting' | 'completed' | 'failed';
      service: string;
      instance: string;
      output?: string;
      duration_ms?: number;
    }
  | { type: 'waiting'; message: string }
  /**
   * `up --wait`: an instance's phase changed (state/inspect.ts: booting, provisioning, ready,
   * degraded, failed, or a run state). `elapsed_ms` counts from `since`, when its QEMU started.
   */
  | { type: 'phase'; instance: string; phase: string; elapsed_ms: number; since: string; errors?: string[] }
  /** `holos pull`: an image is in the cache (downloaded now, or already there). */
  | { type: 'pulled'; image: string; path: string; downloaded: boolean; digest?: string; size: number }
  /** An image download's progress: at most every 200 ms, and once with `done`. */
  | {
      type: 'download';
      image: string;
      url: string;
      received: number;
      total?: number;
      /** Bytes that were there from an interrupted download (resumed with a Range request). */
      resumed_from: number;
      /** Since this download started (a resumed one counts from where it resumed). */
      elapsed_ms: number;
      done: boolean;
    }
  /** Something the user should know that changes nothing by itself (KVM unusable, a project adopted). */
  | { type: 'warning'; message: string }
  /** watch: why a pass starts, a file that does not validate, an instance held back, a failed pass. */
  | { type: 'trigger'; reason: string }
  /** watch: these instances' QMP event sockets are now followed. */
  | { type: 'watching'; instances: string[] }
  | { type: 'invalid'; problems: string[] }
  | { type: 'backoff'; instance: string; delay_ms: number }
  | { type: 'error'; message: string };

export type Stamped = HolosEvent & { schema_version: 1; time: string };

export type Emit = (event: HolosEvent) => void;

export const stamp = (event: HolosEvent): Stamped => ({
  schema_version: 1,
  time: new Date().toISOString(),
  ...event,
});
