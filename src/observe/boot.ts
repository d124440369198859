import { open } from 'node:fs/promises';
import { firstBootMarker } from '../cloudinit/render.js';
import { LineSplitter } from '../util/lines.js';

// What the serial log says of a guest's boots (DESIGN.md §4: read, don't guess). QEMU appends
// every boot's console to serial.log; the applied record says where the disk's first boot and
// the current boot begin in it, so a line of an earlier disk or boot never counts.
//
// Three kinds of line matter: cloud-init's own `Cloud-init v. … running '<stage>'` (it is at
// work), its `Cloud-init v. … finished at` (this boot's last stage is done), and the line
// holos's seed writes once per disk, after a sync, when the first boot is over (render.ts:
// firstBootReport), which carries cloud-init's status.json.

/** What cloud-init made of a disk's first boot. */
export interface CloudInitVerdict {
  /** ready: no errors; degraded: a module failed; failed: cloud-init could not set the guest up. */
  status: 'ready' | 'degraded' | 'failed';
  /** cloud-init's own errors, each `<stage>: <message>`. */
  errors: string[];
}

export interface BootScan {
  /** holos's first-boot line was seen: the first boot is over, with this verdict. */
  firstBoot?: CloudInitVerdict;
  /** A cloud-init line was seen since the disk was made: its state on disk may be half-written. */
  cloudInitRan: boolean;
  /**
   * cloud-init said it finished a boot since the disk was made. Without holos's line after it
   * (the guest went down in the second between them), the first boot counts as over, its
   * verdict unknown.
   */
  cloudInitFinished: boolean;
  /** Since the current boot began: cloud-init is at work, and whether it finished. */
  thisBoot: { cloudInit: boolean; finished: boolean };
}

const running = /Cloud-init v\. \S+ running '/;
const finished = /Cloud-init v\. \S+ finished at /;
const markerAt = (line: string) => line.indexOf(firstBootMarker);

/** The stages whose failure means cloud-init could not set the guest up (no user, no network). */
const setupStages = new Set(['init-local', 'init']);

/** cloud-init writes a module's failure as Python's repr of (module, exception). */
const reprOfFailure = /^\('([^']+)', \w+\((['"])(.*)\2\)\)$/s;

/** `('scripts-user', RuntimeError('Runparts: …'))` → `scripts-user failed: Runparts: …`. */
export function moduleError(error: string): string {
  const match = reprOfFailure.exec(error);
  return match ? `${match[1]} failed: ${match[3]}` : error;
}

/**
 * The verdict in holos's first-boot line: cloud-init's status.json (`{"v1": {"datasource": …,
 * "<stage>": {"errors": […]}, …}}`), or `null` when cloud-init left none.
 */
export function verdictOf(statusJson: string): CloudInitVerdict {
  let status: unknown;
  try {
    status = JSON.parse(statusJson);
  } catch {
    // A line cut by other console output: the boot is over, its verdict unreadable here.
    return { status: 'degraded', errors: ["cloud-init's status could not be read from the serial log"] };
  }
  const v1 = (status as { v1?: Record<string, unknown> } | null)?.v1;
  if (!v1) return { status: 'failed', errors: ['cloud-init left no status (/run/cloud-init/status.json)'] };
  const errors: string[] = [];
  let setupFailed = v1.datasource === null;
  if (setupFailed) errors.push('cloud-init found no datasource (the seed was not read)');
  for (const [stage, value] of Object.entries(v1)) {
    const stageErrors = (value as { errors?: unknown } | null)?.errors;
    if (!Array.isArray(stageErrors) || stageErrors.length === 0) continue;
    if (setupStages.has(stage)) setupFailed = true;
    for (const error of stageErrors) errors.push(`${stage}: ${moduleError(String(error))}`);
  }
  return { status: setupFailed ? 'failed' : errors.length > 0 ? 'degraded' : 'ready', errors };
}

/** Folds the lines of a serial log into a scan; `current` says whether a line is of this boot. */
export class BootScanner {
  readonly scan: BootScan = {
    cloudInitRan: false,
    cloudInitFinished: false,
    thisBoot: { cloudInit: false, finished: false },
  };

  line(text: string, current: boolean): void {
    const at = markerAt(text);
    if (at >= 0) {
      this.scan.firstBoot ??= verdictOf(text.slice(at + firstBootMarker.length).trim());
      if (current) this.scan.thisBoot.finished = true;
      return;
    }
    if (running.test(text)) {
      this.scan.cloudInitRan = true;
      if (current) this.scan.thisBoot.cloudInit = true;
    } else if (finished.test(text)) {
      this.scan.cloudInitFinished = true;
      if (current) this.scan.thisBoot = { cloudInit: true, finished: true };
    }
  }
}

/**
 * Scans `path` from `from` (where the disk's first boot began); lines from `boot` on are of the
 * current boot. Stops early once `enough` says so, or at the end of what is written.
 */
export async function scanSerialLog(
  path: string,
  from: number,
  boot: number,
  enough: (scan: BootScan) => boolean = () => false,
): Promise<BootScan> {
  const scanner = new BootScanner();
  const file = await open(path, 'r').catch(() => undefined);
  if (!file) return scanner.scan;
  try {
    const splitter = new LineSplitter();
    const buffer = Buffer.alloc(64 * 1024);
    let position = from;
    // Where the line being assembled began: a line counts for the boot it started in.
    let lineStart = from;
    for (;;) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      let offset = 0;
      for (const line of splitter.push(chunk)) {
        scanner.line(line, lineStart >= boot);
        offset = chunk.indexOf(0x0a, offset) + 1;
        lineStart = position + offset;
      }
      position += bytesRead;
      if (enough(scanner.scan)) return scanner.scan;
    }
    for (const line of splitter.flush()) scanner.line(line, lineStart >= boot);
  } finally {
    await file.close();
  }
  return scanner.scan;
}
