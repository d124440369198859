import { constants } from 'node:os';

// The local terminal during an interactive session: raw mode while it lasts, and the mode the
// user had put back however the session ends (normal end, error, exit, SIGTERM, SIGHUP).

export interface RawTerminal {
  /** True when stdin is a terminal and was put in raw mode. */
  readonly raw: boolean;
  /** Puts the terminal back; idempotent. */
  restore(): void;
}

const fatalSignals = ['SIGTERM', 'SIGHUP'] as const;

/** Raw mode on stdin, if it is a terminal (else a no-op). */
export function rawTerminal(stdin: NodeJS.ReadStream = process.stdin): RawTerminal {
  if (!stdin.isTTY) return { raw: false, restore: () => {} };
  stdin.setRawMode(true);
  let restored = false;
  const onSignal = (signal: NodeJS.Signals) => {
    restore();
    process.exit(128 + (constants.signals[signal] ?? 0));
  };
  const restore = () => {
    if (restored) return;
    restored = true;
    try {
      stdin.setRawMode(false);
    } catch {
      // the terminal is gone (hang-up)
    }
    process.off('exit', restore);
    for (const signal of fatalSignals) process.off(signal, onSignal);
  };
  process.on('exit', restore);
  for (const signal of fatalSignals) process.on(signal, onSignal);
  return { raw: true, restore };
}

/** The exit status a shell would give for a process killed by this signal (`TERM` → 143). */
export function signalExitCode(signal: string): number {
  const name = (signal.startsWith('SIG') ? signal : `SIG${signal}`) as NodeJS.Signals;
  const number = constants.signals[name] as number | undefined;
  return number === undefined ? 255 : 128 + number;
}
