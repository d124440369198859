import { execFile } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

// How the unit tests run holos the way a user does: node's arguments before holos's own. The
// built bundle, dist/cli.js, when it is newer than every source file (`npm run test:unit`
// builds first); else the sources through tsx, which starts each command about twice as slow
// (a test file run on its own right after an edit, without a build).

const root = join(import.meta.dirname, '..', '..');
const built = join(root, 'dist', 'cli.js');

const modified = (path: string) => statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? Infinity;

function builtIsFresh(): boolean {
  const builtAt = statSync(built, { throwIfNoEntry: false })?.mtimeMs;
  if (builtAt === undefined) return false;
  const sources = readdirSync(join(root, 'src'), { recursive: true, encoding: 'utf8' }).map((file) =>
    join(root, 'src', file),
  );
  return [join(root, 'package.json'), ...sources].every((path) => modified(path) <= builtAt);
}

export const holosArgs: readonly string[] = builtIsFresh()
  ? [built]
  : ['--import', import.meta.resolve('tsx'), join(root, 'src', 'cli.ts')];

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs holos to its end in `cwd` with `env` over the tests' own (HOLOS_FILE cleared). */
export async function runCli(
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliResult> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [...holosArgs, ...args], {
      cwd: opts.cwd ?? process.cwd(),
      env: { ...process.env, HOLOS_FILE: '', ...opts.env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
