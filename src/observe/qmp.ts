import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';

// A small QMP client: one unix socket, one JSON object per line. QEMU greets first, then
// answers commands in order; events arrive in between. Replies are matched by `id` anyway,
// so a reply that comes after its command timed out is simply dropped.

export interface QmpEvent {
  event: string;
  data?: unknown;
  timestamp?: { seconds: number; microseconds: number };
}

/** QEMU refused a command: `class` is QEMU's error class (e.g. `CommandNotFound`, `GenericError`). */
export class QmpError extends Error {
  readonly class: string;
  readonly desc: string;
  readonly command: string;

  constructor(command: string, errorClass: string, desc: string) {
    super(`QMP ${command}: ${desc} (${errorClass})`);
    this.name = 'QmpError';
    this.class = errorClass;
    this.desc = desc;
    this.command = command;
  }
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

type QmpMessage =
  | { QMP: unknown }
  | { event: string; data?: unknown; timestamp?: QmpEvent['timestamp'] }
  | { return: unknown; id?: unknown }
  | { error: { class: string; desc: string }; id?: unknown };

const DEFAULT_TIMEOUT_MS = 10_000;

export class QmpClient extends EventEmitter {
  readonly socketPath: string;
  readonly #socket: Socket;
  readonly #timeoutMs: number;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #buffered = '';
  #connected = false;
  /** Why the connection ended; set once, then every call fails with it. */
  #closedBy: Error | undefined;
  #awaitingGreeting: { resolve: () => void; reject: (error: Error) => void } | undefined;

  private constructor(socketPath: string, timeoutMs: number) {
    super();
    this.socketPath = socketPath;
    this.#timeoutMs = timeoutMs;
    this.#socket = createConnection(socketPath);
    this.#socket.setEncoding('utf8');
    this.#socket.on('connect', () => (this.#connected = true));
    this.#socket.on('data', (chunk: string) => this.#receive(chunk));
    // A refused or vanished socket must become a rejected promise, never an uncaught exception.
    this.#socket.on('error', (error) => {
      const what = this.#connected ? 'connection closed' : 'cannot connect';
      this.#end(new Error(`QMP ${socketPath}: ${what}: ${error.message}`, { cause: error }));
    });
    this.#socket.on('close', () => this.#end(new Error(`QMP ${socketPath}: connection closed`)));
  }

  /**
   * Connects, reads QEMU's greeting and leaves negotiation mode. `timeoutMs` bounds the
   * greeting and becomes the default for every command. QEMU serves one QMP client per
   * socket at a time: a second client waits without a greeting until the first leaves.
   */
  static async connect(socketPath: string, opts: { timeoutMs?: number } = {}): Promise<QmpClient> {
    const { client, ready } = QmpClient.open(socketPath, opts);
    try {
      await ready;
      return client;
    } catch (error) {
      client.close();
      throw error;
    }
  }

  /**
   * Connects and sends `qmp_capabilities` at once, without waiting for the greeting: QEMU reads
   * what a client sent once it serves it, in order, so commands sent right after are answered
   * too, and a query costs one round trip to the VM instead of three (observe asks every VM).
   * `ready` settles once QEMU greeted and left negotiation mode; the caller closes the client.
   */
  static open(
    socketPath: string,
    opts: { timeoutMs?: number } = {},
  ): { client: QmpClient; ready: Promise<void> } {
    const client = new QmpClient(socketPath, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const negotiated = client.execute('qmp_capabilities');
    const ready = client.#greeting().then(() => negotiated);
    negotiated.catch(() => undefined); // its failure is ready's
    return { client, ready: ready.then(() => undefined) };
  }

  get closed(): boolean {
    return this.#closedBy !== undefined;
  }

  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (this.#closedBy) return Promise.reject(this.#closedBy);
    const id = this.#nextId++;
    const timeoutMs = opts.timeoutMs ?? this.#timeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`QMP ${command}: no reply from ${this.socketPath} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { command, resolve: resolve as (value: unknown) => void, reject, timer });
      this.#socket.write(JSON.stringify({ execute: command, ...(args && { arguments: args }), id }) + '\n');
    });
  }

  close(): void {
    this.#end(new Error(`QMP ${this.socketPath}: client closed`));
  }

  #greeting(): Promise<void> {
    if (this.#closedBy) return Promise.reject(this.#closedBy);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#awaitingGreeting = undefined;
        reject(
          new Error(
            `QMP ${this.socketPath}: no greeting within ${this.#timeoutMs} ms (another client connected?)`,
          ),
        );
      }, this.#timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#awaitingGreeting = undefined;
      };
      this.#awaitingGreeting = {
        resolve: () => {
          done();
          resolve();
        },
        reject: (error) => {
          done();
          reject(error);
        },
      };
    });
  }

  #receive(chunk: string): void {
    this.#buffered += chunk;
    for (let newline = this.#buffered.indexOf('\n'); newline >= 0; newline = this.#buffered.indexOf('\n')) {
      const line = this.#buffered.slice(0, newline).trim();
      this.#buffered = this.#buffered.slice(newline + 1);
      if (line) this.#dispatch(line);
    }
  }

  #dispatch(line: string): void {
    const message = parseMessage(line);
    if (!message) {
      this.#end(new Error(`QMP ${this.socketPath}: not a QMP message: ${line.slice(0, 200)}`));
      return;
    }
    if ('QMP' in message) {
      this.#awaitingGreeting?.resolve();
    } else if ('event' in message) {
      this.emit('event', message satisfies QmpEvent);
    } else if (typeof message.id === 'number') {
      this.#settle(message.id, message);
    }
  }

  #settle(id: number, reply: Extract<QmpMessage, { id?: unknown }>): void {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if ('error' in reply) pending.reject(new QmpError(pending.command, reply.error.class, reply.error.desc));
    else pending.resolve(reply.return);
  }

  /** Ends the connection once: pending commands fail with `reason`, except `quit`, whose goal was exactly this. */
  #end(reason: Error): void {
    if (this.#closedBy) return;
    this.#closedBy = reason;
    this.#socket.destroy();
    this.#awaitingGreeting?.reject(reason);
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      if (pending.command === 'quit') pending.resolve(undefined);
      else pending.reject(reason);
    }
    this.#pending.clear();
    this.emit('close');
  }
}

function parseMessage(line: string): QmpMessage | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null ? (value as QmpMessage) : undefined;
  } catch {
    return undefined;
  }
}

/** The run state QEMU reports (`running`, `paused`, `prelaunch`, `shutdown`, `guest-panicked`, …). */
export async function queryStatus(socketPath: string, timeoutMs?: number): Promise<string> {
  const { client, ready } = QmpClient.open(socketPath, { timeoutMs });
  try {
    const reply = client.execute<{ status: string }>('query-status');
    reply.catch(() => undefined); // its failure after a failed greeting is ready's
    await ready;
    return (await reply).status;
  } finally {
    client.close();
  }
}
