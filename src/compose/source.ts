import {
  Composer,
  CST,
  isAlias,
  isCollection,
  isMap,
  isPair,
  isScalar,
  isSeq,
  Lexer,
  LineCounter,
  Parser,
  type Document,
  type Node,
  type Pair,
  type YAMLMap,
  type YAMLSeq,
} from 'yaml';
import { quote } from './issues.js';

export type Path = readonly (string | number)[];

/** Where a problem points: at a value, or at the key that names it (unknown or missing keys). */
export type Anchor = 'value' | 'key';

export interface Position {
  line: number;
  col: number;
}

/** Something wrong with the file, where it is when that is known. */
export interface Problem {
  /** The file it is in, when the project has several (compose/merge.ts); else the one. */
  file?: string;
  position?: Position;
  message: string;
}

/**
 * What a compose file may hold. Real ones are a few kilobytes; the bounds keep a hostile or
 * mistaken file (a disk image, a generated dump, an alias bomb) from exhausting memory, the
 * stack or the user's patience, and each names the first place the file passes it.
 */
export interface Limits {
  /** Bytes in the file: checked before anything is parsed. */
  maxBytes: number;
  /** YAML tokens (keys, values, punctuation), counted as the parser reads them. */
  maxTokens: number;
  /** Mappings and lists inside each other, aliases expanded. */
  maxDepth: number;
  /** Keys and values once aliases and merge keys are expanded: what the schema walks. */
  maxNodes: number;
  /** Anchors plus aliases: the yaml package resolves each alias by scanning all of them. */
  maxAliases: number;
}

export const defaultLimits: Limits = {
  maxBytes: 2 ** 20,
  maxTokens: 100_000,
  maxDepth: 64,
  maxNodes: 100_000,
  maxAliases: 1_000,
};

/** Thrown out of the token stream to stop the parser at the first token past a limit. */
class PastLimit extends Error {
  readonly offset: number;

  constructor(offset: number, message: string) {
    super(message);
    this.offset = offset;
  }
}

// Lexemes that are layout, not content; everything else counts towards maxTokens.
const layout = new Set(['space', 'newline', 'comment', 'byte-order-mark', 'doc-mode', 'flow-error-end']);

/** A parsed compose file that can answer "where in the text is this path?". */
export class SourceFile {
  readonly lines = new LineCounter();
  readonly file: string;
  /** The document; undefined when the file passes a limit, which `problems` then names. */
  readonly document: Document.Parsed | undefined;
  /** Syntax errors, and the limits the file passes; when there are any, the data is not usable. */
  readonly problems: Problem[] = [];
  /** Positions of the parser's stray-token errors, which follow a document that ended early. */
  private readonly strays = new Set<number>();
  private readonly keyIndex = new Map<YAMLMap, Map<string, Pair>>();

  constructor(file: string, text: string, limits: Limits = defaultLimits) {
    this.file = file;
    // merge keys: compose files share blocks with `x-common: &c` and `<<: *c`. The yaml
    // package's own duplicate-key check compares each key with all before it; DocumentCheck
    // finds duplicates in linear time instead.
    const composer = new Composer({ merge: true, uniqueKeys: false });
    let documents: Document.Parsed[];
    // The yaml package makes an Error for each problem it finds, and capturing the stack trace is
    // most of the cost: 100,000 stray commas took 2.6 s with traces, 0.65 s without. Nothing
    // reads them; syntax errors are reported by position.
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      documents = [...composer.compose(this.tokens(text, limits), true, text.length)];
    } catch (error) {
      if (!(error instanceof PastLimit)) throw error;
      this.document = undefined;
      this.problems.push({ position: this.positionAt(error.offset), message: error.message });
      return;
    } finally {
      Error.stackTraceLimit = stackTraceLimit;
    }
    this.document = documents[0]!;
    this.problems.push(...this.syntaxErrors(this.document));
    if (documents.length > 1)
      this.problems.push({
        position: this.positionAt(documents[1]!.range[0]),
        message: 'a second YAML document (after ---); a compose file is one document',
      });
    this.problems.push(
      ...new DocumentCheck(this.document.contents, limits, (at) => this.positionAt(at)).problems,
    );
  }

  positionAt(offset: number): Position {
    return this.lines.linePos(offset);
  }

  /**
   * The parser's tokens, stopped at the first one past maxTokens or maxDepth. The parser
   * closes nested blocks by recursion, so depth has to be bounded while it reads: 10,000
   * nested mappings followed by a line back at the margin overflow its stack.
   */
  private *tokens(text: string, limits: Limits): Generator<CST.Token> {
    const parser = new Parser(this.lines.addNewLine);
    this.lines.addNewLine(0);
    let count = 0;
    let scalarFollows = false;
    for (const lexeme of new Lexer().lex(text)) {
      // A scalar is a marker lexeme and then its text, which may look like any token.
      if (scalarFollows) scalarFollows = false;
      else if (!layout.has(CST.tokenType(lexeme) ?? '')) {
        scalarFollows = lexeme === CST.SCALAR;
        if (++count > limits.maxTokens)
          throw new PastLimit(
            parser.offset,
            `more than ${limits.maxTokens} YAML tokens (keys, values and punctuation); a compose file is far smaller: is this the right file?`,
          );
      }
      for (const token of parser.next(lexeme)) {
        // After a document that ended early, every token is a stray; only the first is reported
        // (see syntaxErrors), and each one handed on would cost an Error with its stack trace.
        if (token.type === 'error' && this.strays.add(token.offset).size > 1) continue;
        yield token;
      }
      // The stack holds the document, the open collections and at most one scalar.
      if (parser.stack.length - 2 > limits.maxDepth) throw new PastLimit(parser.offset, depthMessage(limits));
    }
    yield* parser.end();
  }

  /**
   * The yaml package's errors, one per problem: it reports every token after a document that
   * ended early as another error, and several errors for one bad line; the first says it.
   */
  private syntaxErrors(document: Document.Parsed): Problem[] {
    const errors = [...document.errors].sort((a, b) => a.pos[0] - b.pos[0]);
    const problems: Problem[] = [];
    let lastLine = 0;
    for (const error of errors) {
      const position = this.positionAt(error.pos[0]);
      const stray = error.code === 'UNEXPECTED_TOKEN' && this.strays.has(error.pos[0]);
      if (position.line === lastLine || (stray && problems.length > 0)) continue;
      lastLine = position.line;
      problems.push({ position, message: error.message.split('\n')[0]! });
    }
    return problems;
  }

  /** The position of `path` in the file; a missing key points at the nearest ancestor that exists. */
  positionOf(path: Path, anchor: Anchor = 'value'): Position | undefined {
    let node: unknown = this.document?.contents;
    let found = this.rangeStart(node);
    for (const segment of path) {
      let target: unknown;
      if (isMap(node)) {
        const pair = this.pairsOf(node).get(String(segment));
        if (!pair) break;
        [node, target] = [pair.value, anchor === 'key' ? pair.key : pair.value];
      } else if (isSeq(node) && typeof segment === 'number' && segment < node.items.length) {
        node = target = node.items[segment];
      } else break;
      found = this.rangeStart(target) ?? found;
    }
    return found;
  }

  /**
   * The values tagged `!reset` and `!override` (compose's merge tags, compose/merge.ts), and a
   * problem for any other custom tag: the yaml package would read it as plain text, silently.
   * Depth is bounded already (DocumentCheck), so recursion is safe here.
   */
  mergeTags(): { resets: Path[]; overrides: Path[]; problems: Problem[] } {
    const found = { resets: [] as Path[], overrides: [] as Path[], problems: [] as Problem[] };
    const walk = (node: unknown, path: Path): void => {
      if (!isScalar(node) && !isCollection(node)) return;
      const { tag } = node;
      if (tag === '!reset') found.resets.push(path);
      else if (tag === '!override') found.overrides.push(path);
      else if (tag !== undefined && !tag.startsWith('tag:yaml.org,2002:'))
        found.problems.push({
          position: this.rangeStart(node),
          message: `unknown tag ${tag}; a compose file knows !reset and !override (in a file merged over another)`,
        });
      if (isMap(node))
        for (const pair of node.items) {
          if (isScalar(pair.key)) walk(pair.value, [...path, String(pair.key.value)]);
        }
      else if (isSeq(node)) node.items.forEach((item, i) => walk(item, [...path, i]));
    };
    walk(this.document?.contents, []);
    return found;
  }

  private rangeStart(node: unknown): Position | undefined {
    const range = (node as Node | null | undefined)?.range;
    return range ? this.positionAt(range[0]) : undefined;
  }

  /** The pairs of a mapping by key, built once per mapping: a lookup per issue stays constant. */
  private pairsOf(map: YAMLMap): Map<string, Pair> {
    let pairs = this.keyIndex.get(map);
    if (!pairs) {
      pairs = new Map();
      for (const pair of map.items)
        if (isScalar(pair.key) && !pairs.has(String(pair.key.value))) pairs.set(String(pair.key.value), pair);
      this.keyIndex.set(map, pairs);
    }
    return pairs;
  }
}

function depthMessage(limits: Limits): string {
  return `mappings and lists nested more than ${limits.maxDepth} deep; a compose file needs far fewer: is this the right file?`;
}

const isMergeKey = (key: unknown) => isScalar(key) && typeof key.value === 'symbol';

/** A collection being walked. */
interface Frame {
  node: YAMLMap | YAMLSeq;
  children: Node[];
  next: number;
  /** The expanded size counted before the collection was entered. */
  sizeBefore: number;
  /** Collections around the node, itself included. */
  level: number;
  /** The deepest level inside it, aliases expanded. */
  deepest: number;
}

/**
 * One walk over the document, with an explicit stack so that no depth can overflow it. It finds
 * duplicate and non-scalar keys, aliases with no anchor or inside their own anchor, and merge
 * keys that merge no mapping; and it counts maxAliases, maxNodes and maxDepth with every alias
 * and merge key expanded, as toJS and the schema will see the data, stopping at the first limit
 * passed. Each anchored node's expanded size is kept, so an alias costs one addition.
 */
class DocumentCheck {
  readonly problems: Problem[] = [];
  /** Anchored nodes by name, the latest so far: the one an alias refers to. */
  private readonly anchors = new Map<string, Node>();
  /** Expanded size and height of each anchored node, once it is complete. */
  private readonly expanded = new Map<Node, { size: number; height: number }>();
  private readonly stack: Frame[] = [];
  private anchorsAndAliases = 0;
  private size = 0;
  private readonly limits: Limits;
  private readonly positionAt: (offset: number) => Position;

  constructor(root: unknown, limits: Limits, positionAt: (offset: number) => Position) {
    this.limits = limits;
    this.positionAt = positionAt;
    if (!this.enter(root, 0)) return;
    while (this.stack.length > 0) {
      const frame = this.stack.at(-1)!;
      if (frame.next === frame.children.length) this.leave(this.stack.pop()!);
      else if (!this.enter(frame.children[frame.next++], frame.level)) return;
    }
  }

  private report(node: Node, message: string): void {
    this.problems.push({ position: this.positionAt(node.range?.[0] ?? 0), message });
  }

  /** Counts a node and opens it if it is a collection; false once a limit is passed. */
  private enter(node: unknown, outerLevel: number): boolean {
    if (!isAlias(node) && !isScalar(node) && !isCollection(node)) return true;
    const { limits } = this;
    if ((isAlias(node) || node.anchor !== undefined) && ++this.anchorsAndAliases > limits.maxAliases) {
      this.report(node, `more than ${limits.maxAliases} anchors and aliases; a compose file needs a few`);
      return false;
    }
    let added = 1;
    let level = isCollection(node) ? outerLevel + 1 : outerLevel;
    if (isAlias(node)) {
      const target = this.anchors.get(node.source);
      const done = target && this.expanded.get(target);
      if (!target)
        this.report(
          node,
          `alias *${node.source} has no anchor &${node.source} before it; define the anchor first`,
        );
      else if (!done)
        this.report(
          node,
          `alias *${node.source} is inside the node &${node.source} it refers to; move it out`,
        );
      if (!done) return true;
      added = done.size;
      level = outerLevel + done.height;
    } else if (node.anchor !== undefined) this.anchors.set(node.anchor, node);
    this.size += added;
    if (this.size > limits.maxNodes) {
      this.report(
        node,
        isAlias(node)
          ? `aliases expand the file past ${limits.maxNodes} keys and values; alias smaller anchors, or fewer times`
          : `more than ${limits.maxNodes} keys and values; a compose file is far smaller: is this the right file?`,
      );
      return false;
    }
    if (level > limits.maxDepth) {
      this.report(node, depthMessage(limits));
      return false;
    }
    const outer = this.stack.at(-1);
    if (outer) outer.deepest = Math.max(outer.deepest, level);
    if (isCollection(node)) {
      const children = this.childrenOf(node);
      this.stack.push({ node, children, next: 0, sizeBefore: this.size - 1, level, deepest: level });
    } else if (isScalar(node) && node.anchor !== undefined) this.expanded.set(node, { size: 1, height: 0 });
    return true;
  }

  /** Closes a collection: its merge keys can be checked now that every anchor in it is known. */
  private leave(frame: Frame): void {
    const { node } = frame;
    const outer = this.stack.at(-1);
    if (outer) outer.deepest = Math.max(outer.deepest, frame.deepest);
    for (const pair of node.items)
      if (isPair(pair) && isMergeKey(pair.key) && !this.mergesMappings(pair.value))
        this.report(
          (pair.value ?? pair.key) as Node,
          'a merge key (<<) takes a mapping, an alias of one, or a list of them',
        );
    if (node.anchor !== undefined)
      this.expanded.set(node, {
        size: this.size - frame.sizeBefore,
        height: frame.deepest - frame.level + 1,
      });
  }

  /** The nodes inside a collection, in document order; reports bad and duplicate keys on the way. */
  private childrenOf(node: YAMLMap | YAMLSeq): Node[] {
    const children: Node[] = [];
    const seen = new Map<unknown, Node>();
    for (const item of node.items) {
      if (!isPair(item)) {
        if (item) children.push(item as Node);
        continue;
      }
      const key = item.key as Node | null;
      if (key && !isScalar(key)) this.report(key, 'a key must be a plain name, not a list, mapping or alias');
      else if (key && !isMergeKey(key)) {
        const first = seen.get(key.value);
        if (!first) seen.set(key.value, key);
        else
          this.report(
            key,
            `duplicate key ${quote(String(key.value))} (first on line ${this.positionAt(first.range![0]).line}); each key may appear once in a mapping`,
          );
      }
      if (key) children.push(key);
      if (item.value) children.push(item.value as Node);
    }
    return children;
  }

  /** Whether the value of a `<<` key is something toJS can merge: it throws on anything else. */
  private mergesMappings(value: unknown): boolean {
    const resolve = (node: unknown) => (isAlias(node) ? this.anchors.get(node.source) : node);
    const source = resolve(value);
    return isSeq(source) ? source.items.every((item) => isMap(resolve(item))) : isMap(source);
  }
}
