// Lines out of a byte stream: serial logs (logs.ts, observe/boot.ts) arrive in arbitrary chunks.

import { StringDecoder } from 'node:string_decoder';

/** Splits a byte stream into lines (UTF-8, chunk boundaries anywhere); `\r\n` counts as `\n`. */
export class LineSplitter {
  private decoder = new StringDecoder('utf8');
  private partial = '';

  /** The lines completed by this chunk. */
  push(chunk: Buffer): string[] {
    const text = this.partial + this.decoder.write(chunk);
    const lines = text.split('\n');
    this.partial = lines.pop()!;
    return lines.map(stripCr);
  }

  /** True while an unfinished line is held back. */
  get pending(): boolean {
    return this.partial !== '';
  }

  /** The unfinished line, if any (a prompt such as `login: `), handed out and forgotten. */
  flush(): string[] {
    const rest = this.partial + this.decoder.end();
    this.partial = '';
    this.decoder = new StringDecoder('utf8');
    return rest === '' ? [] : [stripCr(rest)];
  }
}

const stripCr = (line: string) => (line.endsWith('\r') ? line.slice(0, -1) : line);
