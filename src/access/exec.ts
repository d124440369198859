import { formatDuration } from '../compose/units.js';
import { UserError } from '../errors.js';
import { HostKeyMismatch, type SshClient } from '../ssh/exec.js';
import { connectWhenReady, fingerprint, fingerprintOfLine, runSession } from '../ssh/session.js';
import { shellCommand } from '../util/shell.js';
import { runningInstance, sshTargetOf, type AccessProject } from './target.js';
import { rawTerminal, signalExitCode } from './terminal.js';

// `holos exec`: SSH into an instance with the project key over its forwarded loopback port,
// accepting only the host key holos gave it. A command's stdout, stderr and exit status pass
// through untouched; holos's own messages go to stderr.

/** Exit status for a failure on holos's side of the connection (as ssh uses it). */
export const SSH_FAILURE = 255;

export interface ExecOptions {
  /** Login user (default: the service's). */
  user?: string;
  /** How long to wait for sshd; 0: try once. */
  waitMs: number;
  /** Force a pseudo-terminal for a command (a shell gets one whenever stdin is a terminal). */
  tty?: boolean;
}

/** Runs `command` (argv, each word quoted for the guest's shell) or a shell; returns the exit status. */
export async function execInstance(
  project: AccessProject,
  name: string,
  command: readonly string[],
  options: ExecOptions,
): Promise<number> {
  const { info, applied } = await runningInstance(project, name);
  const target = await sshTargetOf(project, applied, options.user);
  const where = `127.0.0.1:${target.port}`;

  let client: SshClient;
  const startedAt = Date.now();
  try {
    client = await connectWhenReady(target, {
      waitMs: options.waitMs,
      onWait: () =>
        process.stderr.write(
          `holos: waiting up to ${formatDuration(options.waitMs)} for sshd of ${info.name} on ${where} (the guest may still be booting; -w sets the wait)\n`,
        ),
    });
  } catch (error) {
    if (error instanceof HostKeyMismatch) {
      const presented = error.presented ? fingerprint(error.presented) : 'another key';
      throw new UserError(
        `${info.name}: host key mismatch on ${where}: the guest presented ${presented}, but holos gave it ${fingerprintOfLine(applied.hostPublicKey)} (${info.layout.applied}); refusing to connect. Something else may be answering on that port, or the VM's disk was changed outside holos; holos up recreates a VM whose spec changed`,
        SSH_FAILURE,
      );
    }
    const message = (error as Error).message;
    const waited =
      options.waitMs > 0 && Date.now() - startedAt >= options.waitMs
        ? ` (waited ${formatDuration(options.waitMs)}; -w waits longer)`
        : '';
    const hint = /authentication methods failed/i.test(message)
      ? target.username === applied.spec.user
        ? `; the project key in ${project.layout.sshDir} is not accepted`
        : `; the project key is authorised for ${applied.spec.user}, the service's login user`
      : `; holos logs ${info.name} shows its console`;
    throw new UserError(
      `cannot SSH into ${info.name} as ${target.username} on ${where}${waited}: ${message}${hint}`,
      SSH_FAILURE,
    );
  }

  const interactive = command.length === 0;
  const stdin = process.stdin;
  const usePty = options.tty === true || (interactive && stdin.isTTY);
  const terminal = usePty ? rawTerminal(stdin) : undefined;
  const stdout = process.stdout;
  try {
    const status = await runSession(
      client,
      interactive ? undefined : shellCommand(command),
      { stdin, stdout, stderr: process.stderr },
      {
        pty: usePty && {
          term: process.env.TERM || 'vt220',
          rows: stdout.isTTY ? stdout.rows : 24,
          cols: stdout.isTTY ? stdout.columns : 80,
        },
        onChannel: (channel) => {
          if (!usePty || !stdout.isTTY) return;
          const resize = () => channel.setWindow(stdout.rows, stdout.columns, 0, 0);
          stdout.on('resize', resize);
          channel.once('close', () => stdout.off('resize', resize));
        },
      },
    );
    if (status.code !== null) return status.code;
    if (status.signal !== null) return signalExitCode(status.signal);
    process.stderr.write(`holos: ${info.name}: the session ended without an exit status\n`);
    return SSH_FAILURE;
  } catch (error) {
    throw new UserError(`${info.name}: ${(error as Error).message}`, SSH_FAILURE);
  } finally {
    terminal?.restore();
    client.end();
    // Nothing more is read: a terminal or pipe left open would keep the process alive.
    stdin.destroy();
  }
}
