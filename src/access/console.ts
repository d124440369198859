import { createConnection } from 'node:net';
import { UserError } from '../errors.js';
import { runningInstance, type AccessProject } from './target.js';
import { rawTerminal } from './terminal.js';

// `holos console`: the instance's serial console (QEMU's chardev socket), byte for byte, with
// the local terminal in raw mode. Ctrl-] (0x1d, as in telnet) detaches and leaves the VM running.

export const DETACH_BYTE = 0x1d;

export type ConsoleEnd = 'detached' | 'closed';

export interface ConsoleSession {
  instance: string;
  end: ConsoleEnd;
}

export async function attachConsole(project: AccessProject, name: string): Promise<ConsoleSession> {
  const { info } = await runningInstance(project, name);
  const socket = createConnection({ path: info.layout.serialSocket });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', (error) =>
      reject(
        new UserError(
          `${info.name}: cannot open the serial console ${info.layout.serialSocket}: ${error.message}`,
        ),
      ),
    );
  });

  const stdin = process.stdin;
  const terminal = rawTerminal(stdin);
  process.stderr.write(`holos: connected to the serial console of ${info.name}; press Ctrl-] to detach\r\n`);
  // A carriage return wakes a getty that already printed its prompt.
  socket.write('\r');

  try {
    const how = await new Promise<ConsoleEnd>((resolve) => {
      let ended = false;
      const end = (how: ConsoleEnd) => {
        if (ended) return;
        ended = true;
        stdin.off('data', onInput);
        process.off('SIGINT', onInterrupt);
        socket.end();
        resolve(how);
      };
      const onInput = (chunk: Buffer) => {
        const at = chunk.indexOf(DETACH_BYTE);
        if (at === -1) {
          socket.write(chunk);
          return;
        }
        if (at > 0) socket.write(chunk.subarray(0, at));
        end('detached');
      };
      // Without a terminal (stdin a pipe), Ctrl-C reaches holos as a signal: detach too.
      const onInterrupt = () => end('detached');
      socket.pipe(process.stdout, { end: false });
      socket.on('close', () => end('closed'));
      socket.on('error', () => end('closed'));
      stdin.on('data', onInput);
      process.on('SIGINT', onInterrupt);
    });
    return { instance: info.name, end: how };
  } finally {
    terminal.restore();
    stdin.destroy();
  }
}
