import { readFile } from 'node:fs/promises';

// Is the QEMU of an instance running? A pid file alone cannot say: QEMU may have died and
// its pid been given to another process. So a pid counts as ours only while that process's
// command line still names something unique to the instance (its QMP socket path).

/** The pid in a pid file, or undefined if the file is missing or holds no pid. */
export async function readPid(pidFile: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(pidFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  // QEMU writes the pid file before the pid: an empty or partial file reads as no pid.
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * True while `pid` lives and its command line contains `marker`. /proc/<pid> exists exactly
 * as long as the process does, and a zombie's cmdline is empty, so one read answers both.
 */
export async function isOurQemu(pid: number, marker: string): Promise<boolean> {
  if (!Number.isSafeInteger(pid) || pid <= 0 || marker === '') return false;
  let cmdline: string;
  try {
    cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return false;
    throw error;
  }
  // Arguments are NUL-separated; a marker never spans two of them.
  return cmdline.split('\0').some((argument) => argument.includes(marker));
}
