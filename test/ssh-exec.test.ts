import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { test } from 'node:test';
import { connect } from '../src/ssh/exec.js';
import { generateKeyPair } from '../src/ssh/keys.js';

// connect() against a server that accepts and hangs up at once, as QEMU's port forward does
// before the guest's sshd listens: it must fail, not leave a promise that never settles (a
// pending promise with nothing else alive made holos exit 13, "unsettled top-level await").

test(
  'connect: a peer that closes before SSH is ready rejects it, with or without a word',
  { timeout: 30_000 },
  async (t) => {
    for (const greeting of ['', 'SSH-2.0-half\r\n']) {
      const server = createServer((socket) => socket.end(greeting));
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      t.after(() => server.close());
      const key = generateKeyPair('holos@test');
      await assert.rejects(
        connect({
          port: (server.address() as AddressInfo).port,
          username: 'u',
          privateKey: key.privateKey,
          hostPublicKey: key.publicKey,
          timeoutMs: 60_000,
        }),
        Error,
        `greeting ${JSON.stringify(greeting)}`,
      );
    }
  },
);
