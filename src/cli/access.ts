import type { Command } from 'commander';
import type { GlobalOptions } from './context.js';

// Getting into VMs: exec (SSH), console (serial), logs (serial log), ssh-config (for ssh and
// editors). They read the state dir and touch no VM's state.

async function accessProject(globals: GlobalOptions) {
  const { stateDirOf } = await import('./context.js');
  const { openAccessProject } = await import('../access/target.js');
  return openAccessProject(stateDirOf(globals), {
    cwd: process.cwd(),
    file: globals.file,
    projectName: globals.projectName,
  });
}

/** `-w`: a duration (`60s`, `5m`), `0` to try once. */
export async function waitOption(text: string): Promise<number> {
  const { parseDuration } = await import('../compose/units.js');
  const { UserError } = await import('../errors.js');
  const ms = parseDuration(text);
  if (typeof ms === 'string') throw new UserError(`-w ${text}: ${ms}`);
  return ms;
}

/** Program options that take a value (`-f x` before the verb is the compose file). */
const valuedGlobals = new Set([
  '-f',
  '--file',
  '-p',
  '--project-name',
  '--state-dir',
  '--log-level',
  '--log-file',
]);

/**
 * `holos logs -f` means follow, as in compose, although `-f` is also the global `--file`
 * (which commander would take wherever it stands). So after the verb `logs`, and before any
 * `--`, `-f` (alone or in a cluster such as `-ft`) becomes `--follow`; before the verb, `-f`
 * is still the file: `holos -f stack.yaml logs -f web`. Other argv is returned as it is.
 */
export function followFlagAfterLogs(argv: readonly string[]): string[] {
  let verb = -1;
  for (let i = 2; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') break;
    if (valuedGlobals.has(arg)) i++;
    else if (!arg.startsWith('-')) {
      verb = i;
      break;
    }
  }
  if (verb === -1 || argv[verb] !== 'logs') return [...argv];
  const out = argv.slice(0, verb + 1);
  let literal = false;
  for (const arg of argv.slice(verb + 1)) {
    if (literal || !/^-[a-zA-Z]*f[a-zA-Z]*$/.test(arg) || /[^ft]/.test(arg.slice(1))) {
      literal ||= arg === '--';
      out.push(arg);
      continue;
    }
    for (const flag of arg.slice(1)) out.push(flag === 'f' ? '--follow' : `-${flag}`);
  }
  return out;
}

export function registerAccessCommands(program: Command, globals: () => GlobalOptions): void {
  program
    .command('exec')
    .description(
      'run a command in an instance over SSH (no command: an interactive shell); its output and exit status pass through',
    )
    .argument('<instance>', 'an instance (web-0), or a service for its replica 0')
    .argument(
      '[command...]',
      'the command and its arguments, after -- (each word is passed as it is, not through a shell)',
    )
    .option('-u, --user <user>', "login user (default: the service's cloud_init user, else the image's)")
    .option('-w, --wait <duration>', 'wait this long for sshd (0: do not wait)', '60s')
    .option('-t, --tty', 'give the command a pseudo-terminal (a shell gets one whenever stdin is a terminal)')
    .showHelpAfterError('(put the command after --, as in: holos exec web-0 -- ls -la)')
    .action(
      async (name: string, command: string[], options: { user?: string; wait: string; tty?: boolean }) => {
        const { execInstance } = await import('../access/exec.js');
        const waitMs = await waitOption(options.wait);
        process.exitCode = await execInstance(await accessProject(globals()), name, command, {
          user: options.user,
          waitMs,
          tty: options.tty,
        });
      },
    );

  program
    .command('console')
    .description("attach to an instance's serial console; Ctrl-] detaches and leaves the VM running")
    .argument('<instance>', 'an instance (web-0), or a service for its replica 0')
    .action(async (name: string) => {
      const { attachConsole } = await import('../access/console.js');
      const session = await attachConsole(await accessProject(globals()), name);
      process.stderr.write(
        session.end === 'detached'
          ? `\nholos: detached from the serial console of ${session.instance}\n`
          : `\nholos: the serial console of ${session.instance} closed (the VM stopped)\n`,
      );
    });

  program
    .command('logs')
    .description(
      "print the serial console logs of services' replicas or of instances, each line prefixed with its instance",
    )
    .argument('[name...]', 'services (all their replicas) or instances (default: every instance)')
    .option('-f, --follow', 'keep printing new output, across reboots and new replicas, until Ctrl-C')
    .option('-n, --tail <lines>', 'only the last lines of each log (a number, or all)', 'all')
    .option(
      '-t, --timestamps',
      'with -f, prefix each new line with the time it arrived (the log itself has no times)',
    )
    .action(async (names: string[], options: { follow?: boolean; tail: string; timestamps?: boolean }) => {
      const { parseTail, printLogs, selectLogs } = await import('../access/logs.js');
      const { UserError } = await import('../errors.js');
      const { styleText } = await import('node:util');
      const tail = parseTail(options.tail);
      if (options.timestamps && !options.follow)
        throw new UserError(
          '-t needs -f: serial logs carry no times, so holos can stamp only the lines it sees arrive',
        );
      const project = await accessProject(globals());
      const selection = await selectLogs(project, names);
      const stdout = process.stdout;
      const stop = new AbortController();
      const interrupt = () => stop.abort();
      process.once('SIGINT', interrupt);
      process.once('SIGTERM', interrupt);
      // A reader that went away (`| head`) ends the logs, quietly.
      stdout.on('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'EPIPE') stop.abort();
      });
      try {
        await printLogs(project, selection, {
          tail,
          follow: options.follow ?? false,
          timestamps: options.timestamps ?? false,
          style: (color, text) => styleText(color, text, { stream: stdout }),
          signal: stop.signal,
          write: (text) =>
            new Promise<void>((resolve) => {
              if (stop.signal.aborted || stdout.write(text)) return resolve();
              const done = () => {
                stdout.off('drain', done);
                stop.signal.removeEventListener('abort', done);
                resolve();
              };
              stdout.once('drain', done);
              stop.signal.addEventListener('abort', done, { once: true });
            }),
        });
      } finally {
        process.off('SIGINT', interrupt);
        process.off('SIGTERM', interrupt);
      }
    });

  program
    .command('ssh-config')
    .description(
      "print an OpenSSH Host block per instance (for ~/.ssh/config: ssh web-0, scp, editors' remote-SSH); writes the known_hosts file it names",
    )
    .action(async () => {
      const { sshConfig } = await import('../access/ssh-config.js');
      process.stdout.write(await sshConfig(await accessProject(globals())));
    });
}
