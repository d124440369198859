import { readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { isMap, LineCounter, parseDocument, stringify } from 'yaml';
import { z } from 'zod';
import { UserError } from '../errors.js';
import { isMissing, writeAtomically } from '../util/fs.js';

// `holos.images.lock`, beside the compose file: each image the stack pulls, with the URL and the
// digest it must have, so a stack comes up on the same bytes on every host and every day. Written
// by `holos images lock`; `up` pulls what it pins, and `--locked` makes it mandatory.

export const lockFileName = 'holos.images.lock';

const digest = z.string().regex(/^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/, {
  message: 'must be sha256:<64 hex> or sha512:<128 hex>',
});

const entrySchema = z.strictObject({
  url: z.url({ protocol: /^https?$/ }),
  digest,
  size: z.number().int().nonnegative().optional(),
});

const lockSchema = z.strictObject({
  lock_version: z.literal(1),
  images: z.record(z.string(), entrySchema),
});

export type LockEntry = z.infer<typeof entrySchema>;
export interface ImageLock {
  file: string;
  images: Record<string, LockEntry>;
}

const header = `# Written by \`holos images lock\`: the images this stack pulls and the digests they must have.
# Commit it beside holos.yaml; \`holos up\` pulls exactly these, \`holos up --locked\` refuses others.
`;

/** The lock file beside the compose file, or undefined when there is none. Bad content: one line naming file:line:col. */
export async function readImageLock(dir: string): Promise<ImageLock | undefined> {
  const file = join(dir, lockFileName);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw new UserError(`${file}: ${(error as Error).message}`);
  }
  const where = (offset: number | undefined) => {
    if (offset === undefined) return relative(process.cwd(), file) || file;
    const { line, col } = lines.linePos(offset);
    return `${relative(process.cwd(), file) || file}:${line}:${col}`;
  };
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true });
  const [error] = doc.errors;
  if (error)
    throw new UserError(
      `${where(error.pos[0])}: ${error.message.split('\n')[0]}; run holos images lock to write it again`,
    );
  const parsed = lockSchema.safeParse(doc.toJS());
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const node = doc.getIn(issue.path as (string | number)[], true) as { range?: [number] } | undefined;
    const at = node?.range?.[0] ?? (isMap(doc.contents) ? doc.contents.range[0] : undefined);
    throw new UserError(
      `${where(at)}: ${issue.path.join('.') || 'lock file'} ${issue.message}; run holos images lock to write it again`,
    );
  }
  return { file, images: parsed.data.images };
}

export async function writeImageLock(dir: string, images: Record<string, LockEntry>): Promise<string> {
  const file = join(dir, lockFileName);
  const sorted = Object.fromEntries(Object.entries(images).sort(([a], [b]) => a.localeCompare(b)));
  await writeAtomically(file, header + stringify({ lock_version: 1, images: sorted }), 0o644);
  return file;
}
