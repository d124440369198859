import { rename } from 'node:fs/promises';

/**
 * Writes `source` as a standalone qcow2 at `target` (its backing chain folded in): made beside
 * it and renamed, so a failure never leaves a half-written disk under the name. `readArgs`
 * choose what is read (`-U -l snapshot.name=…`: a snapshot, while a VM holds the disk).
 */
export async function convertToQcow2(
  qemuImg: string,
  source: string,
  target: string,
  readArgs: string[] = [],
): Promise<void> {
  const partial = `${target}.partial`;
  const { execa } = await import('execa');
  await execa(qemuImg, ['convert', '-q', ...readArgs, '-O', 'qcow2', source, partial]);
  await rename(partial, target);
}
