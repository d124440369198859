// A distribution mirror (mirror.ts) as a process of its own, for tests where holos runs in a
// network namespace: started inside it (`ip netns exec … node --import tsx mirror-main.ts`),
// it listens on that namespace's 127.0.0.1 and is driven over its stdin and stdout, one JSON
// object a line. The harness's startNetnsMirror is the other end.
//
//   stdout, first line:  {"url": "<HOLOS_IMAGE_MIRROR value>"}
//   stdin:  {"id": 1, "op": "serveAs", "ref": "debian:12", "file": "/abs/path.qcow2"}
//           {"id": 2, "op": "requests"}             every request so far, in order
//           {"id": 3, "op": "paths", "ref": "debian:12"}   the image's and its checksum's paths
//   stdout: {"id": 1, "result": …} or {"id": 1, "error": "…"}
//
// It serves until killed or until its stdin ends: a test process that dies (any way at all)
// closes the pipe, so the mirror never outlives it.

import { createInterface } from 'node:readline';
import { findCatalogImage } from '../../src/images/catalog.js';
import { mirrored } from '../../src/images/source.js';
import { startMirror } from './mirror.js';

interface Request {
  id: number;
  op: string;
  ref?: string;
  file?: string;
}

const mirror = await startMirror();
const pathOf = (upstream: string) => new URL(mirrored(upstream, mirror.url)).pathname;

async function answer(request: Request): Promise<unknown> {
  switch (request.op) {
    case 'serveAs':
      return mirror.serveAs(String(request.ref), String(request.file));
    case 'requests':
      return mirror.server.requests;
    case 'paths': {
      const found = findCatalogImage(String(request.ref));
      if (typeof found === 'string') throw new Error(found);
      return { image: pathOf(found.image.url), checksum: pathOf(found.image.checksum.url) };
    }
    default:
      throw new Error(`unknown op ${JSON.stringify(request.op)}`);
  }
}

const reply = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);

reply({ url: mirror.url });
const input = createInterface({ input: process.stdin });
input.on('line', (line) => {
  let request: Request;
  try {
    request = JSON.parse(line) as Request;
  } catch {
    return reply({ id: -1, error: `not JSON: ${line}` });
  }
  answer(request).then(
    (result) => reply({ id: request.id, result }),
    (error: unknown) => reply({ id: request.id, error: (error as Error).message }),
  );
});
input.on('close', () => {
  void mirror.close().finally(() => process.exit(0));
});
