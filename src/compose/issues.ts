import type { z } from 'zod';
import type { Anchor, Path } from './source.js';

/** One thing wrong with a compose file, before it is given a file position. */
export interface Issue {
  path: Path;
  message: string;
  anchor: Anchor;
}

/** `services.web.ports[0]`: the path as users read it. */
export function formatPath(path: Path): string {
  return path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++)
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    previous = current;
  }
  return previous[b.length]!;
}

/** The closest candidate, if it is close enough to be a typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const candidate of candidates) {
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

function unknownKeyMessage(key: string, known: string[]): string {
  const guess = closest(key, known);
  const hint = guess ? `did you mean "${guess}"?` : `allowed here: ${known.join(', ')}`;
  return `unknown key "${key}"; ${hint} (extension keys start with x-)`;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the string "${value}"`;
  return `${typeof value} ${JSON.stringify(value)}`;
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
      return issue.keys.map((key) => ({
        path: [...path, key],
        message: unknownKeyMessage(key, known),
        anchor: 'key',
      }));
    }
    const value = valueAt(input, path);
    const anchor: Anchor = issue.code === 'invalid_key' || value === undefined ? 'key' : 'value';
    return [{ path, message: describe(issue, value), anchor }];
  });
}
