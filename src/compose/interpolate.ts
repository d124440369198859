import { isPair, isScalar, isSeq, visit, type Document, type Scalar } from 'yaml';
import type { Issue } from './issues.js';

// Variables in a compose file, as the compose specification writes them: `$VAR` and `${VAR}`,
// `${VAR:-default}` (unset or empty), `${VAR-default}` (unset), `${VAR:?error}` and `${VAR?error}`
// (required), `${VAR:+alternative}` and `${VAR+alternative}`, `$$` for a literal `$`; defaults and
// alternatives may hold variables themselves. Values only, never keys, as compose does. The
// variables come from the environment, then from a `.env` file beside the compose file.

export type Lookup = (name: string) => string | undefined;

const nameStart = /[A-Za-z_]/;
const nameChar = /[A-Za-z0-9_]/;

export class InterpolationError extends Error {}

/** The text with its variables substituted. Throws InterpolationError, saying what is wrong. */
export function interpolate(text: string, lookup: Lookup): string {
  return new Scanner(text, lookup).until(undefined);
}

class Scanner {
  private at = 0;
  private readonly text: string;
  private readonly lookup: Lookup;

  constructor(text: string, lookup: Lookup) {
    this.text = text;
    this.lookup = lookup;
  }

  /** Reads to the end, or to the `}` that closes an enclosing `${…}` (`close`), substituting. */
  until(close: '}' | undefined): string {
    let out = '';
    while (this.at < this.text.length) {
      const c = this.text[this.at]!;
      if (close && c === close) return out;
      if (c !== '$') {
        out += c;
        this.at++;
        continue;
      }
      const next = this.text[this.at + 1];
      if (next === '$') {
        out += '$';
        this.at += 2;
      } else if (next === '{') {
        this.at += 2;
        out += this.braced();
      } else if (next !== undefined && nameStart.test(next)) {
        this.at++;
        out += this.lookup(this.name()) ?? '';
      } else {
        // A `$` before anything else stays, as compose keeps it.
        out += '$';
        this.at++;
      }
    }
    if (close) throw new InterpolationError(`"\${" is not closed; write $$ for a literal $`);
    return out;
  }

  private name(): string {
    const start = this.at;
    while (this.at < this.text.length && nameChar.test(this.text[this.at]!)) this.at++;
    return this.text.slice(start, this.at);
  }

  /** After `${`: a name, maybe an operator and its word, then `}`. */
  private braced(): string {
    const first = this.text[this.at];
    if (first === undefined || !nameStart.test(first))
      throw new InterpolationError(
        `"\${${this.text.slice(this.at, this.at + 10)}" does not start with a variable name; write $$ for a literal $`,
      );
    const name = this.name();
    const value = this.lookup(name);
    let op = '';
    for (const candidate of [':-', ':?', ':+', '-', '?', '+'])
      if (this.text.startsWith(candidate, this.at)) {
        op = candidate;
        break;
      }
    if (this.at >= this.text.length) throw new InterpolationError(`"\${${name}" is not closed`);
    if (op === '' && this.text[this.at] !== '}')
      throw new InterpolationError(
        `"\${${name}${this.text.slice(this.at, this.at + 1)}…": after a variable name comes }, :-, -, :?, ?, :+ or +`,
      );
    this.at += op.length;
    const word = op === '' ? '' : this.until('}');
    if (this.text[this.at] !== '}') throw new InterpolationError(`"\${${name}" is not closed`);
    this.at++;
    const set = value !== undefined;
    const nonEmpty = set && value !== '';
    switch (op) {
      case '':
        return value ?? '';
      case ':-':
        return nonEmpty ? value : word;
      case '-':
        return set ? value : word;
      case ':?':
      case '?':
        if (op === ':?' ? nonEmpty : set) return value!;
        throw new InterpolationError(
          `variable ${name} is ${set ? 'empty' : 'not set'}${word ? `: ${word}` : ''} (set it in the environment or in .env)`,
        );
      case ':+':
        return nonEmpty ? word : '';
      default:
        return set ? word : '';
    }
  }
}

/**
 * What an interpolated plain scalar is: a number or a boolean when its text now reads as one
 * (`replicas: ${N}`), as if the value had been written there; any other text stays a string.
 */
function retype(text: string): string | number | boolean {
  if (/^[-+]?\d+$/.test(text) && Number.isSafeInteger(Number(text))) return Number(text);
  if (/^[-+]?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) return Number(text);
  if (text === 'true' || text === 'false') return text === 'true';
  return text;
}

/**
 * Substitutes the variables of every string value of the document, in place; one issue per
 * value that cannot be, at its path. Keys and the values of `x-` extensions are left alone.
 */
export function interpolateDocument(document: Document.Parsed, lookup: Lookup): Issue[] {
  const issues: Issue[] = [];
  visit(document, {
    Pair(_, pair) {
      if (isScalar(pair.key) && String(pair.key.value).startsWith('x-')) return visit.SKIP;
      return undefined;
    },
    Scalar(key, node: Scalar, ancestors) {
      if (key === 'key' || typeof node.value !== 'string' || !node.value.includes('$')) return;
      try {
        const text = interpolate(node.value, lookup);
        node.value = node.type === 'PLAIN' ? retype(text) : text;
      } catch (error) {
        if (!(error instanceof InterpolationError)) throw error;
        issues.push({ path: pathOf([...ancestors, node]), message: error.message, anchor: 'value' });
      }
    },
  });
  return issues;
}

/** The path of a node from its ancestors: a key for each pair, an index for each list item. */
function pathOf(chain: readonly unknown[]): (string | number)[] {
  const path: (string | number)[] = [];
  chain.forEach((node, i) => {
    if (isPair(node) && isScalar(node.key)) path.push(String(node.key.value));
    else if (isSeq(node)) path.push(node.items.indexOf(chain[i + 1]));
  });
  return path;
}
