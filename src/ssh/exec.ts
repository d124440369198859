import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';

// SSH into an instance with the project key, over its forwarded loopback port, accepting
// only the host key holos generated for it (never trust on first use).

const { Client, utils } = ssh2;
export type SshClient = InstanceType<typeof Client>;

export interface SshTarget {
  host?: string;
  port: number;
  username: string;
  privateKey: string;
  /** The host key the guest must present: an authorized_keys-style line. */
  hostPublicKey: string;
  timeoutMs?: number;
}

export class HostKeyMismatch extends Error {
  /** The key the guest presented (SSH wire blob), when known. */
  presented?: Buffer;
}

/** The SSH wire blob of an OpenSSH public key line. */
export function publicKeyBlob(publicKeyLine: string): Buffer {
  const parsed = utils.parseKey(publicKeyLine);
  if (parsed instanceof Error) throw parsed;
  return parsed.getPublicSSH();
}

/** Connects once; rejects on any error, HostKeyMismatch when the guest's key is not the pinned one. */
export function connect(target: SshTarget): Promise<SshClient> {
  const pinned = publicKeyBlob(target.hostPublicKey);
  return new Promise((resolve, reject) => {
    const client = new Client();
    let mismatch: Buffer | undefined;
    let ready = false;
    client.on('ready', () => {
      ready = true;
      resolve(client);
    });
    // A server that accepts and then hangs up (QEMU's port forward, before sshd listens) may end
    // the connection with no error: without this the promise would never settle.
    client.on('close', () => {
      if (!ready) reject(new Error('the connection closed before SSH was ready'));
    });
    client.on('error', (error) => {
      client.end();
      reject(
        mismatch
          ? Object.assign(
              new HostKeyMismatch(
                `the guest presented host key ${mismatch.toString('base64').slice(0, 24)}…, not the one holos gave it`,
                { cause: error },
              ),
              { presented: mismatch },
            )
          : error,
      );
    });
    client.connect({
      host: target.host ?? '127.0.0.1',
      port: target.port,
      username: target.username,
      privateKey: target.privateKey,
      readyTimeout: target.timeoutMs ?? 20_000,
      hostVerifier: (key: Buffer) => {
        if (key.equals(pinned)) return true;
        mismatch = key;
        return false;
      },
    });
  });
}

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs a command and collects its output; rejects after `timeoutMs`. */
export function execCollect(client: SshClient, command: string, timeoutMs: number): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    client.exec(command, (error: Error | undefined, channel: ClientChannel) => {
      if (error) {
        reject(error);
        return;
      }
      const result: ExecResult = { code: null, signal: null, stdout: '', stderr: '' };
      const timer = setTimeout(() => {
        channel.close();
        reject(new Error(`timed out after ${timeoutMs / 1000}s`));
      }, timeoutMs);
      channel.on('data', (chunk: Buffer) => (result.stdout += chunk.toString('utf8')));
      channel.stderr.on('data', (chunk: Buffer) => (result.stderr += chunk.toString('utf8')));
      channel.on('exit', (code: number | null, signal?: string) => {
        result.code = code;
        result.signal = signal ?? null;
      });
      channel.on('close', () => {
        clearTimeout(timer);
        resolve(result);
      });
    });
  });
}

/** Connect, run one command, disconnect. */
export async function runOnce(target: SshTarget, command: string, timeoutMs: number): Promise<ExecResult> {
  const client = await connect({ ...target, timeoutMs: Math.min(timeoutMs, target.timeoutMs ?? timeoutMs) });
  try {
    return await execCollect(client, command, timeoutMs);
  } finally {
    client.end();
  }
}
