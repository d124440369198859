import { homedir } from 'node:os';
import { join } from 'node:path';

/** The global options every verb receives. */
export interface GlobalOptions {
  /** -f, once per file (compose/load.ts findComposeFiles). */
  file?: string[];
  projectName?: string;
  stateDir?: string;
  debug?: boolean;
  logLevel?: string;
  logFile?: string;
  envFile?: string;
  /** --profile, once per profile (compose/profiles.ts). */
  profile?: string[];
}

/** `--state-dir`, else `$HOLOS_STATE_DIR`, else /var/lib/holos for root, else ~/.local/state/holos. */
export function stateDirOf(options: GlobalOptions): string {
  if (options.stateDir) return options.stateDir;
  if (process.env.HOLOS_STATE_DIR) return process.env.HOLOS_STATE_DIR;
  if (process.getuid?.() === 0) return '/var/lib/holos';
  return join(process.env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'holos');
}

/**
 * pino, to --log-file or stderr; none (and pino not even loaded) unless a level or a file is
 * asked for.
 */
export async function createLogger(options: GlobalOptions) {
  const level = options.logLevel ?? (options.logFile ? 'info' : 'silent');
  if (level === 'silent') return undefined;
  const { pino } = await import('pino');
  const destination = options.logFile
    ? pino.destination({ dest: options.logFile, sync: true, mkdir: true })
    : pino.destination({ fd: 2, sync: true });
  return pino({ level, base: { pid: process.pid } }, destination);
}
