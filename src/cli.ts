#!/usr/bin/env node
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { followFlagAfterLogs } from './cli/argv.js';
import { registerCommands } from './cli/commands.js';
import type { GlobalOptions } from './cli/context.js';
import packageJson from '../package.json' with { type: 'json' };

// Only commander and the verbs' descriptions are loaded eagerly: a verb loads its module when
// it runs (cli/commands.ts), so `holos --version` and shell completion stay fast.

const program = new Command('holos')
  .description('docker compose for QEMU/KVM: a stack of VMs from one holos.yaml')
  .version(packageJson.version, '-V, --version')
  .addOption(
    new Option(
      '-f, --file <path>',
      'compose file; again to merge another over it (default: $HOLOS_FILE, else holos.yaml and holos.override.yaml here)',
    ).argParser((file: string, earlier: string[] = []) => [...earlier, file]),
  )
  .option('-p, --project-name <name>', 'project name (default: name: in the file, else its directory name)')
  .option(
    '--state-dir <dir>',
    'state directory (default: $HOLOS_STATE_DIR, else ~/.local/state/holos; root: /var/lib/holos)',
  )
  .option('--debug', 'print stack traces for errors')
  .addOption(
    new Option('--log-level <level>', 'structured (pino JSON) logs at this level, to stderr or --log-file')
      .choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .env('HOLOS_LOG_LEVEL'),
  )
  .option('--log-file <path>', 'write the structured logs to this file (default level: info)')
  .option(
    '--env-file <path>',
    'variables for ${…} in the file (default: $HOLOS_ENV_FILE, else .env beside it)',
  )
  .addOption(
    new Option(
      '--profile <name>',
      'enable the services of this profile; again for another, * for all (default: $HOLOS_PROFILES)',
    ).argParser((name: string, earlier: string[] = []) => [...earlier, name]),
  )
  .showHelpAfterError('(run holos --help for usage)')
  // Every verb that loads the file reads these through $HOLOS_ENV_FILE (compose/load.ts) and
  // $HOLOS_PROFILES (compose/profiles.ts), as the child processes of a verb would.
  .hook('preAction', () => {
    const { envFile, profile } = globals();
    if (envFile !== undefined) process.env.HOLOS_ENV_FILE = resolve(envFile);
    if (profile !== undefined) process.env.HOLOS_PROFILES = profile.join(',');
  });

const globals = () => program.opts<GlobalOptions>();
registerCommands(program, globals);

try {
  await program.parseAsync(followFlagAfterLogs(process.argv));
} catch (error) {
  const { UserError, formatUserError } = await import('./errors.js');
  if (globals().debug) console.error(error);
  else if (error instanceof UserError) {
    if (error.message) console.error(formatUserError(error));
  } else
    console.error(
      `holos: internal error: ${(error as Error).message} (run with --debug for the stack trace)`,
    );
  process.exitCode = error instanceof UserError ? error.exitCode : 1;
}
