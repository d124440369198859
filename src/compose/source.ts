import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';

export type Path = readonly (string | number)[];

/** Where a problem points: at a value, or at the key that names it (unknown or missing keys). */
export type Anchor = 'value' | 'key';

export interface Position {
  line: number;
  col: number;
}

/** A parsed compose file that can answer "where in the text is this path?". */
export class SourceFile {
  readonly lines = new LineCounter();
  readonly document: Document.Parsed;
  readonly file: string;

  constructor(file: string, text: string) {
    this.file = file;
    // merge keys: compose files share blocks with `x-common: &c` and `<<: *c`.
    this.document = parseDocument(text, { lineCounter: this.lines, merge: true, prettyErrors: false });
  }

  /** Syntax errors (bad indentation, duplicate keys, …) with their positions. */
  syntaxErrors(): { position: Position; message: string }[] {
    return this.document.errors.map((error) => ({
      position: this.lines.linePos(error.pos[0]),
      message: error.message.split('\n')[0]!.replace(/ at line \d+, column \d+.*$/, ''),
    }));
  }

  /** The position of `path` in the file; a missing key points at the nearest ancestor that exists. */
  positionOf(path: Path, anchor: Anchor = 'value'): Position | undefined {
    for (let depth = path.length; depth >= 0; depth--) {
      const node = this.nodeAt(path.slice(0, depth), anchor === 'key');
      if (node?.range) return this.lines.linePos(node.range[0]);
    }
    return undefined;
  }

  private nodeAt(path: Path, wantKey: boolean): Node | undefined {
    let node: unknown = this.document.contents;
    for (const [i, segment] of path.entries()) {
      const last = i === path.length - 1;
      if (isMap(node)) {
        const pair = node.items.find(
          (p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(segment),
        );
        if (!pair) return undefined;
        node = last && wantKey ? pair.key : pair.value;
      } else if (isSeq(node) && typeof segment === 'number') {
        node = node.items[segment];
      } else return undefined;
    }
    return (node ?? undefined) as Node | undefined;
  }
}
