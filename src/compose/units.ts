import { quote } from './issues.js';

// Durations follow Go's time.ParseDuration and sizes follow qemu-img, because users copy
// values between holos, compose files and QEMU documentation. Both are hand-written: the npm
// parsers accept a bare `30` or read `1M` as a minute (see reference/dependencies.md).

const durationUnits: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const durationPart = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/**
 * The longest duration a compose file may give: ten years is past any wait or grace period,
 * and a bound keeps a 400-digit value from becoming Infinity.
 */
export const maxDuration = 87_600 * 3_600_000;

/** Milliseconds for a Go duration (`30s`, `1m30s`, `1.5h`, `0`), or an error text. */
export function parseDuration(text: string): number | string {
  const invalid = `invalid duration ${quote(text)}: use a number with a unit, such as 30s, 1m30s or 500ms`;
  if (text === '0') return 0;
  if (text.startsWith('-')) return `duration ${quote(text)} must not be negative`;
  const start = text.startsWith('+') ? 1 : 0;
  if (start === text.length) return invalid;
  let total = 0;
  // A sticky expression reads the parts in place: linear however many there are.
  durationPart.lastIndex = start;
  while (durationPart.lastIndex < text.length) {
    const match = durationPart.exec(text);
    if (!match) return invalid;
    total += Number(match[1]) * durationUnits[match[2]!]!;
  }
  if (!(total <= maxDuration))
    return `duration ${quote(text)} is too long; the most is ${formatDuration(maxDuration)} (10 years)`;
  return total;
}

/** The shortest Go-style text for a duration in milliseconds (`90000` → `1m30s`). */
export function formatDuration(ms: number): string {
  // Never "Infinityh" or "NaNms": the values come from parseDuration or the clock, but a text
  // that looks like a duration must be one.
  if (!Number.isFinite(ms)) return 'unknown';
  if (ms < 0) return `-${formatDuration(-ms)}`;
  if (ms === 0) return '0s';
  const parts: string[] = [];
  let rest = ms;
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
  ] as const) {
    const whole = Math.floor(rest / size);
    if (whole > 0) parts.push(`${whole}${unit}`);
    rest -= whole * size;
  }
  if (rest >= 1000 || (rest > 0 && parts.length > 0)) parts.push(`${Number((rest / 1000).toFixed(3))}s`);
  else if (rest > 0) parts.push(`${rest}ms`);
  return parts.join('');
}

const sizeUnits: Record<string, number> = {
  '': 1,
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
  p: 2 ** 50,
};

/** The largest size a compose file may give: 1P is past any disk, and exact as a double. */
export const maxSize = 2 ** 50;

/** Bytes for a qemu-style size (`512M`, `20G`, `1.5T`, `10GiB`, plain bytes), or an error text. */
export function parseSize(text: string): number | string {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$/i.exec(text.trim());
  if (!match) return `invalid size ${quote(text)}: use a number with a binary unit, such as 512M, 20G or 1T`;
  const bytes = Math.round(Number(match[1]) * sizeUnits[match[2]!.toLowerCase()]!);
  if (!(bytes <= maxSize)) return `size ${quote(text)} is too large; the most is ${formatSize(maxSize)}`;
  return bytes;
}

/** The shortest exact qemu-style text for a size in bytes (`21474836480` → `20G`). */
export function formatSize(bytes: number): string {
  for (const unit of ['T', 'G', 'M', 'K'] as const) {
    const size = sizeUnits[unit.toLowerCase()]!;
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}

/** Bytes as a person reads them: `312.4 MiB`, `2.0 GiB`, `900 B`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}
