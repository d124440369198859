import type { z } from 'zod';
import type { Anchor, Path } from './source.js';
import { refusedKeysAt } from './refused.js';

/** One thing wrong with a compose file, before it is given a file position. */
export interface Issue {
  path: Path;
  message: string;
  anchor: Anchor;
}

// Messages quote what the user wrote, and a compose file can hold anything: escape sequences
// that would recolour or clear the terminal, bidi overrides that reorder the line as shown, and
// values of megabytes. Whatever reaches a message is escaped and cut to a recognisable prefix.

/**
 * Characters a terminal acts on or hides: controls (C0, DEL, C1), format characters (bidi
 * overrides, zero-width spaces, the BOM), line and paragraph separators, and lone surrogates.
 */
const unprintable = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;
const isUnprintable = /^[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]$/u;
const hasUnprintable = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;
const namedEscapes: Record<string, string> = { '\t': '\\t', '\n': '\\n', '\r': '\\r' };

function escapeChar(char: string): string {
  const code = char.codePointAt(0)!;
  const hex = (digits: number) => code.toString(16).padStart(digits, '0');
  return (
    namedEscapes[char] ?? (code < 0x100 ? `\\x${hex(2)}` : code < 0x10000 ? `\\u${hex(4)}` : `\\u{${hex(1)}}`)
  );
}

/** `text` with every unprintable character written as an escape (`\t`, `\x1b`, `\u202e`). */
export function escapeUnprintable(text: string): string {
  return text.replace(unprintable, escapeChar);
}

/** A value longer than this (once escaped) is shown by its first `keptLength` characters. */
const maxValueLength = 100;
const keptLength = 60;

/** The longest message: a value the user wrote never makes a line much longer. */
export const maxMessageLength = 270;

/** Whether `text` may hold a word that `shorten` would cut: a plain scan, as a regex is slower. */
function mayHaveLongWord(text: string): boolean {
  let run = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    run = code === 0x20 || code === 0x22 ? 0 : run + 1;
    if (run > maxValueLength) return true;
  }
  return false;
}

/**
 * `text` escaped, and when that is long, a prefix of it plus its length in characters. Linear in
 * the text, and never splits a character or an escape.
 */
function shorten(text: string): { shown: string; length?: number } {
  let shown = '';
  let kept = 0;
  let length = 0;
  for (const char of text) {
    length++;
    if (shown.length > maxValueLength) continue;
    const piece = isUnprintable.test(char) ? escapeChar(char) : char;
    if (shown.length + piece.length <= keptLength) kept = shown.length + piece.length;
    shown += piece;
  }
  return shown.length <= maxValueLength ? { shown } : { shown: shown.slice(0, kept), length };
}

/** A value the user wrote, in quotes: `"8080:http"`, or `"aaaa…" (5242880 characters)` when long. */
export function quote(text: string): string {
  const { shown, length } = shorten(text);
  return length === undefined ? `"${shown}"` : `"${shown}…" (${length} characters)`;
}

/**
 * A whole message made safe to print, whoever wrote it: unprintable characters escaped, each long
 * word (a value without spaces) cut as `quote` cuts it, and the message cut at maxMessageLength.
 */
export function printable(message: string): string {
  if (!hasUnprintable.test(message) && !mayHaveLongWord(message) && message.length <= maxMessageLength)
    return message;
  const words = message.replace(/([^\s"]+)("?)/g, (_, word: string, closingQuote: string) => {
    const { shown, length } = shorten(word);
    return length === undefined ? shown + closingQuote : `${shown}…${closingQuote} (${length} characters)`;
  });
  const escaped = escapeUnprintable(words);
  if (escaped.length <= maxMessageLength) return escaped;
  const cut = maxMessageLength - 30;
  // Cutting between the halves of a surrogate pair would print a lone surrogate.
  const end = /[\ud800-\udbff]/.test(escaped[cut - 1]!) ? cut - 1 : cut;
  return `${escaped.slice(0, end)}… (${escaped.length} characters)`;
}

/**
 * `services.web.ports[0]`: the path as users read it. A key that is not a plain name (spaces, a
 * dot, a control character, a megabyte) is quoted, escaped and cut as quote() does.
 */
export function formatPath(path: Path): string {
  return path
    .map((segment, i) => {
      if (typeof segment === 'number') return `[${segment}]`;
      const key = /^[\w-]+$/.test(segment) && segment.length <= maxValueLength ? segment : quote(segment);
      return i === 0 ? key : `.${key}`;
    })
    .join('');
}

function editDistance(a: string, b: string): number {
  // Two rows of the Levenshtein table, reused: an unknown key is compared with every known one.
  let previous = new Uint32Array(b.length + 1).map((_, j) => j);
  let current = new Uint32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    current[0] = i;
    for (let j = 1; j <= b.length; j++)
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    [previous, current] = [current, previous];
  }
  return previous[b.length]!;
}

/** The closest candidate, if it is close enough to be a typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
    // The distance is at least the difference in length: a long word skips the quadratic work.
    if (Math.abs(word.length - candidate.length) >= bestDistance) continue;
    const distance = editDistance(word, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

type AnySchema = z.core.$ZodType;

/** The object keys the schema allows at `path`, found by walking the schema's definition. */
function knownKeysAt(schema: AnySchema, path: Path): string[] {
  let node: AnySchema | undefined = schema;
  const unwrap = () => {
    for (;;) {
      const def = node?._zod.def as { type: string; innerType?: AnySchema; in?: AnySchema } | undefined;
      if (def && (def.type === 'optional' || def.type === 'default' || def.type === 'nullable'))
        node = def.innerType;
      else if (def?.type === 'pipe') node = def.in;
      else return;
    }
  };
  for (const segment of path) {
    unwrap();
    const def = node?._zod.def as {
      type: string;
      shape?: Record<string, AnySchema>;
      valueType?: AnySchema;
      element?: AnySchema;
    };
    node = def.type === 'object' ? def.shape?.[segment] : def.type === 'record' ? def.valueType : def.element;
  }
  unwrap();
  const def = node?._zod.def as { type: string; shape?: Record<string, AnySchema> } | undefined;
  return def?.type === 'object' ? Object.keys(def.shape ?? {}) : [];
}

export function unknownKeyMessage(key: string, known: string[]): string {
  const guess = closest(key, known);
  const hint = guess ? `did you mean "${guess}"?` : `allowed here: ${known.join(', ')}`;
  return `unknown key ${quote(key)}; ${hint} (extension keys start with x-)`;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the string ${quote(value)}`;
  // String, not JSON: JSON writes a number too large for a double (1e400) as null.
  return `${typeof value} ${value as number}`;
}

const article = (type: string) => (/^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`);
const typeNames: Record<string, string> = {
  object: 'mapping',
  record: 'mapping',
  array: 'list',
  int: 'integer',
};

/** A message that says what is wrong and what to do, in place of zod's generic one. */
function describe(issue: z.core.$ZodIssue, input: unknown): string {
  if (input === undefined)
    return issue.message.startsWith('Invalid input') ? 'is required' : `is required; it ${issue.message}`;
  switch (issue.code) {
    case 'invalid_type':
      // Digits past a double's range read as Infinity, which zod calls "not a number".
      if (typeof input === 'number' && !Number.isFinite(input))
        return `expected a finite number, got ${input}`;
      if (!issue.message.startsWith('Invalid input')) return `${issue.message}, got ${describeValue(input)}`;
      return `expected ${article(typeNames[issue.expected] ?? issue.expected)}, got ${describeValue(input)}`;
    case 'too_small':
      if (!issue.message.startsWith('Too small')) return issue.message;
      return issue.origin === 'array'
        ? `needs at least ${issue.minimum} entries`
        : `must be at least ${issue.minimum}`;
    case 'too_big':
      return issue.origin === 'array'
        ? `allows at most ${issue.maximum} entries`
        : `must be at most ${issue.maximum}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describeValue(input)}`;
    case 'invalid_key':
      return issue.issues[0]?.message ?? issue.message;
    case 'invalid_union':
      return issue.message.startsWith('Invalid input')
        ? `${describeValue(input)} is not valid here`
        : issue.message;
    default:
      return issue.message;
  }
}

function valueAt(root: unknown, path: Path): unknown {
  let node = root;
  for (const segment of path) node = (node as Record<string | number, unknown> | undefined)?.[segment];
  return node;
}

/** Turns zod's issues into ours: one per unknown key, positioned, with friendlier messages. */
export function fromZod(issues: readonly z.core.$ZodIssue[], schema: AnySchema, input: unknown): Issue[] {
  return issues.flatMap((issue): Issue[] => {
    const path = issue.path as (string | number)[];
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(schema, path);
      const refused = refusedKeysAt(path);
      return issue.keys.map((key) => ({
        path: [...path, key],
        message: Object.hasOwn(refused, key) ? `${key} ${refused[key]}` : unknownKeyMessage(key, known),
        anchor: 'key',
      }));
    }
    const value = valueAt(input, path);
    const anchor: Anchor = issue.code === 'invalid_key' || value === undefined ? 'key' : 'value';
    return [{ path, message: describe(issue, value), anchor }];
  });
}
