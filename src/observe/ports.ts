import { createSocket } from 'node:dgram';
import { createServer, isIPv6 } from 'node:net';

// Host port probes: bind and let go. A port that is free now may be taken a moment later:
// for a fixed port a failed bind by QEMU is the final word, and a port holos picked is picked
// again (instance.ts). This probe is for early, readable errors and for picking forward ports.

/** Whether `port` can be bound on `host` now. Errors other than "in use" (EACCES, EADDRNOTAVAIL) reject. */
export async function isPortFree(
  port: number,
  host = '127.0.0.1',
  protocol: 'tcp' | 'udp' = 'tcp',
): Promise<boolean> {
  try {
    await (protocol === 'tcp' ? bindTcp(port, host) : bindUdp(port, host));
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') return false;
    throw error;
  }
}

/**
 * The ports freePort handed out lately, oldest first. The kernel offers a port again as soon as
 * the probe lets go of it, before the QEMU it was picked for binds it: with VMs starting at the
 * same time, two would be given one port (about 1 in 40 of 300 probes in a row here).
 */
const handedOut = new Set<number>();
const rememberedPorts = 4096;

/** A TCP port the kernel considers free on `host` right now, and not handed out lately. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (;;) {
    const port = await bindTcp(0, host);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    // Bounded, for watch, which starts VMs for as long as it runs.
    if (handedOut.size > rememberedPorts) handedOut.delete(handedOut.values().next().value!);
    return port;
  }
}

/** Binds, closes, and returns the port bound. */
function bindTcp(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port, host, exclusive: true }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address ? address.port : port;
      server.close(() => resolve(bound));
    });
  });
}

function bindUdp(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = createSocket(isIPv6(host) ? 'udp6' : 'udp4');
    socket.once('error', (error) => {
      socket.close();
      reject(error);
    });
    socket.bind({ port, address: host, exclusive: true }, () => {
      const bound = socket.address().port;
      socket.close(() => resolve(bound));
    });
  });
}
