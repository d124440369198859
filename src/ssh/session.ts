import { createConnection } from 'node:net';
import { createHash } from 'node:crypto';
import type { ClientChannel, PseudoTtyOptions } from 'ssh2';
import { HostKeyMismatch, connect, publicKeyBlob, type SshClient, type SshTarget } from './exec.js';
import { sleep } from '../util/sleep.js';

// Streaming sessions over a pinned-key connection (exec.ts): a command whose stdin, stdout,
// stderr and exit status pass through, or a shell, with or without a pseudo-terminal.

export interface SessionIo {
  /** Forwarded to the remote side until it ends (then EOF is sent); none: EOF at once. */
  stdin?: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

export interface SessionOptions {
  /** A pseudo-terminal for the session (`term`, `rows`, `cols`); false or absent: none. */
  pty?: PseudoTtyOptions | false;
  /** Called with the open channel, e.g. to forward window size changes. */
  onChannel?: (channel: ClientChannel) => void;
}

/** How the remote side ended: an exit status, or the signal that killed it. */
export interface ExitStatus {
  code: number | null;
  /** Signal name without `SIG` (`TERM`, `KILL`), as SSH reports it. */
  signal: string | null;
}

/** Opens `command` (or, undefined, a login shell) and pumps it until the channel closes. */
export function runSession(
  client: SshClient,
  command: string | undefined,
  io: SessionIo,
  options: SessionOptions = {},
): Promise<ExitStatus> {
  return new Promise((resolve, reject) => {
    const opened = (error: Error | undefined, channel: ClientChannel) => {
      if (error) {
        reject(error);
        return;
      }
      options.onChannel?.(channel);
      pump(channel, io).then(resolve, reject);
    };
    const pty = options.pty || false;
    if (command === undefined) client.shell(pty, opened);
    else client.exec(command, pty ? { pty } : {}, opened);
    client.once('error', reject);
  });
}

function pump(channel: ClientChannel, io: SessionIo): Promise<ExitStatus> {
  return new Promise((resolve) => {
    const status: ExitStatus = { code: null, signal: null };
    const { stdin } = io;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      if (stdin) {
        stdin.unpipe(channel);
        stdin.pause();
      }
      resolve(status);
    };
    // A reader that went away (`| head`): the session ends as ssh's does when SIGPIPE kills it.
    // What the guest still sends is dropped, and nothing waits for the channel to wind down.
    // The listener stays: writes already queued fail the same way after the session.
    const onBrokenPipe = (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') return;
      channel.unpipe();
      channel.stderr.unpipe();
      channel.resume();
      channel.stderr.resume();
      if (status.code === null && status.signal === null) status.signal = 'PIPE';
      channel.close();
      finish();
    };
    channel.on('exit', (code: number | null, signal?: string) => {
      status.code = code ?? null;
      status.signal = signal ?? null;
    });
    // `end: false`: stdout and stderr belong to the process and stay open after the session.
    channel.pipe(io.stdout, { end: false });
    channel.stderr.pipe(io.stderr, { end: false });
    io.stdout.on('error', onBrokenPipe);
    io.stderr.on('error', onBrokenPipe);
    if (stdin) stdin.pipe(channel);
    else channel.end();
    channel.on('close', finish);
  });
}

/** `SHA256:…` as OpenSSH prints a key's fingerprint. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

export const fingerprintOfLine = (publicKeyLine: string) => fingerprint(publicKeyBlob(publicKeyLine));

/**
 * Whether an SSH server answers on host:port: its banner (`SSH-2.0-…`) arrives within
 * `timeoutMs`. QEMU's user-mode forward accepts connections before the guest's sshd listens
 * and then closes them, so only a banner counts.
 */
export function sshBanner(port: number, timeoutMs: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    let data = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      data += chunk;
      if (data.length >= 4) done(data.startsWith('SSH-'));
    });
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
  });
}

export interface WaitOptions {
  /** How long to keep trying; 0: one attempt. */
  waitMs: number;
  /** Said once, when the first attempt fails and there is time left to wait. */
  onWait?: () => void;
  /** Authentication failures to retry (cloud-init may still be adding the key); default 3. */
  authRetries?: number;
}

const isAuthFailure = (error: Error) => /authentication methods failed/i.test(error.message);

/**
 * Connects once sshd answers: probes for its banner with back-off (200 ms doubling to 3.2 s)
 * and retries failed handshakes until `waitMs` has passed. A host key that is not the pinned
 * one fails at once (HostKeyMismatch): waiting never makes an impostor acceptable.
 */
export async function connectWhenReady(target: SshTarget, options: WaitOptions): Promise<SshClient> {
  const deadline = Date.now() + options.waitMs;
  let delay = 200;
  let authFailures = 0;
  let told = false;
  for (;;) {
    let lastError: Error;
    if (options.waitMs === 0 || (await sshBanner(target.port, 2_000, target.host))) {
      try {
        return await connect(target);
      } catch (error) {
        if (error instanceof HostKeyMismatch) throw error;
        lastError = error as Error;
        if (isAuthFailure(lastError) && ++authFailures > (options.authRetries ?? 3)) throw lastError;
      }
    } else lastError = new Error(`no SSH server answered on ${target.host ?? '127.0.0.1'}:${target.port}`);
    if (Date.now() + delay > deadline) throw lastError;
    if (!told) {
      told = true;
      options.onWait?.();
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 3_200);
  }
}
