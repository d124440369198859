import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateComposeFile, type LoadedCompose } from '../../src/compose/load.js';

const created: string[] = [];
process.on('exit', () => created.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

/** Writes `text` as holos.yaml in a fresh directory that also holds an (empty) base.qcow2. */
export function composeDir(text: string, dirName = 'proj'): string {
  const parent = mkdtempSync(join(tmpdir(), 'holos-test-'));
  created.push(parent);
  const dir = join(parent, dirName);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'base.qcow2'), '');
  writeFileSync(join(dir, 'holos.yaml'), text);
  return dir;
}

/** Loads compose text that must be valid. */
export function loadText(text: string, dirName?: string): LoadedCompose {
  const result = validateComposeFile(join(composeDir(text, dirName), 'holos.yaml'));
  if (!result.ok) throw new Error(result.problems.join('\n'));
  return result.loaded;
}
