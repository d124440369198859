import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { UserError } from '../errors.js';

export interface QemuBinaries {
  system: string;
  img: string;
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

function find(envVar: string, name: string): string {
  const chosen = process.env[envVar] || onPath(name);
  if (chosen) return chosen;
  throw new UserError(
    `${name} not found on PATH; install QEMU (Debian: apt install qemu-system-x86 qemu-utils) or set ${envVar}`,
  );
}

/** `$HOLOS_QEMU_SYSTEM` / `$HOLOS_QEMU_IMG`, else qemu-system-x86_64 and qemu-img on PATH. */
export function qemuBinaries(): QemuBinaries {
  return { system: find('HOLOS_QEMU_SYSTEM', 'qemu-system-x86_64'), img: find('HOLOS_QEMU_IMG', 'qemu-img') };
}

/** The programs holos would run, found or not (doctor and version say which): as qemuBinaries picks them. */
export const configuredQemu = (): QemuBinaries => ({
  system: process.env.HOLOS_QEMU_SYSTEM || 'qemu-system-x86_64',
  img: process.env.HOLOS_QEMU_IMG || 'qemu-img',
});

/** A program's `--version` first line, or why it did not answer. */
export async function programVersion(program: string): Promise<{ version: string } | { missing: string }> {
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  try {
    const { stdout } = await promisify(execFile)(program, ['--version'], { timeout: 10_000 });
    return { version: stdout.split('\n')[0]!.trim() };
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    return { missing: e.code === 'ENOENT' ? 'not found on PATH' : e.message.split('\n')[0]! };
  }
}
