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

const durationPart = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;

/** Milliseconds for a Go duration (`30s`, `1m30s`, `1.5h`, `0`), or an error text. */
export function parseDuration(text: string): number | string {
  const invalid = `invalid duration "${text}": use a number with a unit, such as 30s, 1m30s or 500ms`;
  if (text === '0') return 0;
  if (text.startsWith('-')) return `duration "${text}" must not be negative`;
  let rest = text.startsWith('+') ? text.slice(1) : text;
  if (rest === '') return invalid;
  let total = 0;
  while (rest !== '') {
    const match = durationPart.exec(rest);
    if (!match) return invalid;
    total += Number(match[1]) * durationUnits[match[2]!]!;
    rest = rest.slice(match[0].length);
  }
  return total;
}

/** The shortest Go-style text for a duration in milliseconds (`90000` → `1m30s`). */
export function formatDuration(ms: number): string {
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

/** Bytes for a qemu-style size (`512M`, `20G`, `1.5T`, `10GiB`, plain bytes), or an error text. */
export function parseSize(text: string): number | string {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$/i.exec(text.trim());
  if (!match) return `invalid size "${text}": use a number with a binary unit, such as 512M, 20G or 1T`;
  const bytes = Math.round(Number(match[1]) * sizeUnits[match[2]!.toLowerCase()]!);
  if (!Number.isSafeInteger(bytes)) return `size "${text}" is too large`;
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
