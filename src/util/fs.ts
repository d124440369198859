import { access, chmod, readFile, rename, writeFile } from 'node:fs/promises';

// Records are written so that a crash leaves either the old file or the new one, never half.

let writes = 0;

/**
 * Write to a temp file with the final mode (whatever the umask), flush, then rename over the
 * target. The temp name is unique per write, so parallel writes in one process never share one.
 */
export async function writeAtomically(
  path: string,
  content: string | Uint8Array,
  mode = 0o600,
): Promise<void> {
  const temporary = `${path}.tmp-${process.pid}-${++writes}`;
  await writeFile(temporary, content, { mode, flush: true });
  await chmod(temporary, mode);
  await rename(temporary, path);
}

/** The file's text, or undefined if it does not exist. */
export async function readIfPresent(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** A JSON file parsed, or undefined if it is missing or not JSON (a torn write of an older holos). */
export async function readJson<T>(path: string): Promise<T | undefined> {
  const text = await readIfPresent(path);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

/** Whether the path can be reached (a broken link or an unreadable directory says no). */
export const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );

export const isMissing = (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT';
