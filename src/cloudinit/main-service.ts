import { environmentProblem, renderEnvironment } from './environment.js';

// The VM's main service: the program a service runs, as the systemd unit holos-main.service.
// cloud-init writes the unit on the first boot and enables it at the very end of runcmd (after
// the user's packages and commands, which it may need); enabled, it starts on every later boot.
// Its input is a plain spec, whoever it comes from (compose's command/entrypoint, a
// Dockerfile's CMD/ENTRYPOINT): nothing here knows of compose. Pure.

export interface MainServiceSpec {
  /** The program and its arguments; argv[0] an absolute path or a name systemd looks up. */
  argv: string[];
  /** Its environment (each value passed environmentProblem). */
  environment: Record<string, string>;
  /** Its working directory (absolute); systemd's default, /, when absent. */
  workingDir?: string;
  /** The user (a name or a uid) and group it runs as; root when absent. */
  user?: string;
  group?: string;
}

export const mainUnitName = 'holos-main.service';
export const mainUnitPath = `/etc/systemd/system/${mainUnitName}`;
/** Its environment, the same text as the lines added to /etc/environment (environment.ts). */
export const mainEnvironmentPath = '/etc/holos/main.env';

/**
 * Why systemd cannot run `argv` as it is, or undefined. systemd reads prefixes (`-`, `@`, `:`,
 * `+`, `!`) off the first word even inside quotes, and takes an absolute path or a bare name
 * (looked up in its own PATH), never a relative path.
 */
export function argvProblem(argv: readonly string[]): string | undefined {
  const [program] = argv;
  if (program === undefined || program === '') return 'needs a program to run';
  if (/^[-@:+!]/.test(program))
    return `the program ${JSON.stringify(program)} cannot start with ${program[0]} (systemd reads it as a prefix); give its absolute path`;
  if (!program.startsWith('/') && program.includes('/'))
    return `the program ${JSON.stringify(program)} is a relative path; give its absolute path, or a name found in /usr/local/sbin, /usr/local/bin, /usr/sbin or /usr/bin`;
  return undefined;
}

/** A value in a unit file: `%` starts a specifier there, so it is doubled. */
const unitValue = (text: string) => text.replaceAll('%', '%%');

/**
 * One word of ExecStart=, meaning exactly itself: in double quotes, with `\` and `"` escaped,
 * controls as escapes, and `$` (a variable there) and `%` (a specifier) doubled. systemd splits
 * on nothing inside quotes, so no shell and no word of the argv can change another.
 */
export function execWord(word: string): string {
  const escaped = word.replace(/[\\"$%\p{Cc}]/gu, (char) => {
    if (char === '$' || char === '%') return char + char;
    if (char === '\\' || char === '"') return `\\${char}`;
    const code = char.charCodeAt(0);
    // \xNN is a byte to systemd: a C1 control (a character of two bytes) is \uNNNN.
    return code < 0x80
      ? `\\x${code.toString(16).padStart(2, '0')}`
      : `\\u${code.toString(16).padStart(4, '0')}`;
  });
  return `"${escaped}"`;
}

/** The unit's text. */
export function renderMainUnit(spec: MainServiceSpec): string {
  const problem = argvProblem(spec.argv);
  if (problem) throw new Error(`main service: ${problem}, past validation`);
  const lines = [
    '[Unit]',
    'Description=holos main service',
    // Its program may talk to peers or the network: up to the point a network-online wait gives.
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    // exec, not simple: a program that cannot be executed fails the unit, visibly.
    'Type=exec',
    `ExecStart=${spec.argv.map(execWord).join(' ')}`,
    `User=${unitValue(spec.user ?? 'root')}`,
    ...(spec.group !== undefined ? [`Group=${unitValue(spec.group)}`] : []),
    ...(spec.workingDir !== undefined ? [`WorkingDirectory=${unitValue(spec.workingDir)}`] : []),
    ...(Object.keys(spec.environment).length > 0 ? [`EnvironmentFile=${mainEnvironmentPath}`] : []),
    // The journal keeps its output; the console is the serial port, which `holos logs` shows.
    'StandardOutput=journal+console',
    'StandardError=journal+console',
    'SyslogIdentifier=holos-main',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ];
  return lines.join('\n');
}

/** A file for cloud-init's write_files. */
export interface GuestFile {
  path: string;
  content: string;
  permissions: string;
}

/** The files the main service needs: its unit and, when it has one, its environment (root's only). */
export function mainServiceFiles(spec: MainServiceSpec): GuestFile[] {
  for (const [name, value] of Object.entries(spec.environment)) {
    const problem = environmentProblem(name, value);
    if (problem) throw new Error(`main service: ${problem}, past validation`);
  }
  return [
    { path: mainUnitPath, content: renderMainUnit(spec), permissions: '0644' },
    ...(Object.keys(spec.environment).length > 0
      ? [{ path: mainEnvironmentPath, content: renderEnvironment(spec.environment), permissions: '0600' }]
      : []),
  ];
}

/**
 * The last line of runcmd on the first boot: enables the unit (systemctl enable reloads systemd,
 * which has not seen the file yet) and starts it without waiting. It keeps the status of the
 * user's last command, so cloud-init's verdict on runcmd is theirs, as without a main service.
 */
export const enableMainService = `s=$?; systemctl enable --now --no-block ${mainUnitName}; exit $s`;
