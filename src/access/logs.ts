import type { Stats } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { UserError } from '../errors.js';
import { LineSplitter } from '../util/lines.js';
import { listInstances, describeInstances, type AccessProject, type InstanceInfo } from './target.js';

// `holos logs`: the serial console logs QEMU writes (serial.log, appended across restarts),
// each line prefixed with its instance's name as compose does. With `follow`, new output is
// printed as it arrives, across reboots, recreated instances and new replicas.

// ---------------------------------------------------------------------------------------------
// Pure pieces

/* eslint-disable no-control-regex -- these match terminal control sequences on purpose */
const CSI = /\x1b\[[0-?]*[ -/]*[@-~]/g;
const OSC = /\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)/g;
const OTHER_ESCAPE = /\x1b(?:[()*+][0-9A-Za-z]|[@-Z\\-_]|[0-9=>])/g;
const CONTROL = /[\x00-\x08\x0a-\x1a\x1c-\x1f\x7f]/g;
const LONE_ESCAPE = /\x1b(?!\[[0-9;]*m)/g;
const SGR = /\x1b\[[0-9;]*m/g;
/* eslint-enable no-control-regex */

/**
 * A serial line made safe to print among others: colours (SGR) stay, anything else that
 * drives a terminal (clearing the screen, moving the cursor, titles) goes, and of a line
 * redrawn with carriage returns (a progress display) the last non-blank version is kept.
 */
export function displayable(line: string): string {
  const clean = (text: string) =>
    text
      .replace(OSC, '')
      .replace(CSI, (sequence) => (sequence.endsWith('m') ? sequence : ''))
      .replace(OTHER_ESCAPE, '')
      .replace(CONTROL, '')
      .replace(LONE_ESCAPE, '');
  const versions = line.split('\r').map(clean);
  const visible = (text: string) => text.replace(SGR, '').trim() !== '';
  return versions.findLast(visible) ?? versions.at(-1) ?? '';
}

/** Compose's colour rotation for prefixes. */
export const PREFIX_COLORS = [
  'cyan',
  'yellow',
  'green',
  'magenta',
  'blue',
  'cyanBright',
  'yellowBright',
  'greenBright',
  'magentaBright',
  'blueBright',
] as const;
export type PrefixColor = (typeof PREFIX_COLORS)[number];

/** Colours text, or returns it as it is (no terminal, NO_COLOR): util.styleText decides in the CLI. */
export type Styler = (color: PrefixColor, text: string) => string;
export const plain: Styler = (_color, text) => text;

/** `web-0  | ` padded to `width`, coloured. */
export function linePrefix(name: string, width: number, color: PrefixColor, style: Styler): string {
  return style(color, `${name.padEnd(width)} |`) + ' ';
}

/** An ISO 8601 time of day and date, UTC, fixed width (as `-t` prints it). */
export const timestampOf = (date: Date) => date.toISOString();
const TIMESTAMP_WIDTH = timestampOf(new Date(0)).length;

/** One output line: prefix, then (with `-t`) the arrival time or, unknown, blanks, then the text. */
export function formatLine(prefix: string, text: string, stamp?: Date | null): string {
  if (stamp === undefined) return `${prefix}${text}\n`;
  return `${prefix}${stamp === null ? ' '.repeat(TIMESTAMP_WIDTH) : timestampOf(stamp)} ${text}\n`;
}

/** Parses `-n`: a count of lines, or `all`. */
export function parseTail(text: string): number | undefined {
  if (text === 'all') return undefined;
  if (!/^\d+$/.test(text)) throw new UserError(`-n ${text}: use a number of lines or all`);
  return Number(text);
}

/**
 * Where the last `lines` lines of a file start: reads backwards from `size` in blocks until it
 * has seen enough line ends. A final line without its newline counts as a line.
 */
export async function tailStart(
  path: string,
  size: number,
  lines: number,
  blockSize = 64 * 1024,
): Promise<number> {
  if (lines === 0) return size;
  const file = await open(path, 'r');
  try {
    let position = size;
    let newlines = 0;
    let first = true;
    while (position > 0) {
      const length = Math.min(blockSize, position);
      position -= length;
      const buffer = Buffer.alloc(length);
      await file.read(buffer, 0, length, position);
      for (let i = length - 1; i >= 0; i--) {
        if (buffer[i] !== 0x0a) continue;
        // A newline that ends the file closes the last line; it does not start one.
        if (first && position + i === size - 1) continue;
        if (++newlines === lines) return position + i + 1;
      }
      first = false;
    }
    return 0;
  } finally {
    await file.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Choosing what to show

export interface LogSelection {
  /** Instances named or belonging to a named service, now. */
  instances: InstanceInfo[];
  /** Whether an instance that appears later belongs to the selection (follow mode). */
  includes: (info: InstanceInfo) => boolean;
}

/** Service names (all their replicas) or instance names; none: every instance of the project. */
export async function selectLogs(project: AccessProject, names: readonly string[]): Promise<LogSelection> {
  const instances = await listInstances(project.layout);
  if (names.length === 0) return { instances, includes: () => true };
  const services = new Set<string>();
  const single = new Set<string>();
  const unknown: string[] = [];
  for (const name of names) {
    if (project.services.includes(name) || instances.some((i) => i.service === name)) services.add(name);
    else if (instances.some((i) => i.name === name) || project.declared.includes(name)) single.add(name);
    else unknown.push(name);
  }
  if (unknown.length > 0) {
    const serviceList = [...new Set([...project.services, ...instances.map((i) => i.service)])];
    throw new UserError(
      `no service or instance ${unknown.join(', ')} in project ${project.name} (services: ${serviceList.join(', ') || 'none'}; ${describeInstances(instances)})`,
    );
  }
  const includes = (info: InstanceInfo) => services.has(info.service) || single.has(info.name);
  return { instances: instances.filter(includes), includes };
}

// ---------------------------------------------------------------------------------------------
// Printing and following

export interface LogOptions {
  /** Last lines per instance; undefined: all. */
  tail?: number;
  follow: boolean;
  timestamps: boolean;
  style: Styler;
  /** Where lines go (awaited: backpressure). */
  write: (text: string) => Promise<void>;
  /** Stops following. */
  signal?: AbortSignal;
  /** How often to look for new output and new instances (ms). */
  pollMs?: number;
}

interface Source {
  name: string;
  path: string;
  color: PrefixColor;
  /** Identity of the file being read (inode, birth time); a new one means the instance was recreated. */
  identity?: string;
  offset: number;
  splitter: LineSplitter;
  /** Polls since the last byte while a partial line is held back. */
  idle: number;
}

/** Polls with no new bytes after which a held-back partial line (a prompt) is printed. */
const PARTIAL_IDLE_POLLS = 4;

export async function printLogs(
  project: AccessProject,
  selection: LogSelection,
  options: LogOptions,
): Promise<void> {
  const sources = new Map<string, Source>();
  let width = 0;
  const add = (info: InstanceInfo): Source => {
    const source: Source = {
      name: info.name,
      path: info.layout.serialLog,
      color: PREFIX_COLORS[sources.size % PREFIX_COLORS.length]!,
      offset: 0,
      splitter: new LineSplitter(),
      idle: 0,
    };
    sources.set(info.name, source);
    width = Math.max(width, info.name.length);
    return source;
  };
  for (const info of selection.instances) add(info);

  const emit = async (source: Source, lines: string[], stamp: Date | null | undefined) => {
    if (lines.length === 0 || options.signal?.aborted) return;
    const prefix = linePrefix(source.name, width, source.color, options.style);
    await options.write(lines.map((line) => formatLine(prefix, displayable(line), stamp)).join(''));
  };
  const stampNow = () => (options.timestamps ? new Date() : undefined);

  // What is there already: the last `tail` lines of each log, instance after instance.
  for (const source of sources.values()) {
    if (options.signal?.aborted) return;
    const info = await stat(source.path).catch(() => undefined);
    if (!info) continue;
    source.identity = identityOf(info);
    const start = options.tail === undefined ? 0 : await tailStart(source.path, info.size, options.tail);
    await readRange(source.path, start, info.size, async (chunk) => {
      await emit(source, source.splitter.push(chunk), options.timestamps ? null : undefined);
    });
    source.offset = info.size;
    if (!options.follow) await emit(source, source.splitter.flush(), options.timestamps ? null : undefined);
  }
  if (!options.follow) return;

  const pollMs = options.pollMs ?? 250;
  let rescanAt = 0;
  while (!options.signal?.aborted) {
    if (Date.now() >= rescanAt) {
      rescanAt = Date.now() + 1_000;
      for (const info of await listInstances(project.layout))
        if (!sources.has(info.name) && selection.includes(info)) add(info);
    }
    for (const source of sources.values()) {
      const info = await stat(source.path).catch(() => undefined);
      if (!info) continue;
      if (identityOf(info) !== source.identity || info.size < source.offset) {
        // Recreated (a new file) or truncated: start over from its beginning.
        await emit(source, source.splitter.flush(), stampNow());
        source.identity = identityOf(info);
        source.offset = 0;
      }
      if (info.size > source.offset) {
        const end = info.size;
        await readRange(source.path, source.offset, end, async (chunk) => {
          await emit(source, source.splitter.push(chunk), stampNow());
        });
        source.offset = end;
        source.idle = 0;
      } else if (source.splitter.pending && ++source.idle >= PARTIAL_IDLE_POLLS) {
        await emit(source, source.splitter.flush(), stampNow());
        source.idle = 0;
      }
    }
    await sleep(pollMs, options.signal);
  }
  for (const source of sources.values()) await emit(source, source.splitter.flush(), stampNow());
}

const identityOf = (info: Stats) => `${info.dev}:${info.ino}:${info.birthtimeMs}`;

async function readRange(
  path: string,
  start: number,
  end: number,
  onChunk: (chunk: Buffer) => Promise<void>,
): Promise<void> {
  if (end <= start) return;
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(64 * 1024);
    let position = start;
    while (position < end) {
      const { bytesRead } = await file.read(buffer, 0, Math.min(buffer.length, end - position), position);
      if (bytesRead === 0) break;
      position += bytesRead;
      await onChunk(Buffer.from(buffer.subarray(0, bytesRead)));
    }
  } finally {
    await file.close();
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
