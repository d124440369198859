import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

// An image mirror on 127.0.0.1 for tests: what a real one does that a download depends on
// (Content-Length, validators, ranges, If-Range, 404, redirects) plus the faults it must survive
// (a connection cut half-way, a server that stops sending). Files are streamed, never read whole.

export interface ImageServer {
  url: string; // http://127.0.0.1:<port>
  /** Every request, in order. */
  requests: { method: string; path: string; range?: string; ifRange?: string }[];
  /** Add or replace what `path` serves. */
  serve(path: string, source: { file: string } | { body: string | Buffer }): void;
  /** `path` answers 302 to `location` (a path on this server or a full URL). */
  redirect(path: string, location: string): void;
  /** The next GET of `path` is cut (socket destroyed) after `bytes` body bytes. */
  cutAfter(path: string, bytes: number): void;
  /** The next GET of `path` sends `bytes` body bytes then stops sending (the connection stays open). */
  stallAfter(path: string, bytes: number): void;
  /** Stop listening and destroy the open sockets (a stalled response among them). */
  close(): Promise<void>;
}

interface Served {
  size: number;
  etag: string;
  lastModified: string;
  read: (start: number, end: number) => Readable; // end inclusive
}

type Source = { file: string } | { body: Buffer; etag: string; lastModified: string };

async function describe(source: Source): Promise<Served> {
  if ('body' in source) {
    const { body } = source;
    return {
      ...source,
      size: body.length,
      read: (start, end) => Readable.from([body.subarray(start, end + 1)]),
    };
  }
  const { size, mtime, mtimeMs } = await stat(source.file);
  return {
    size,
    etag: `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`,
    lastModified: mtime.toUTCString(),
    read: (start, end) => createReadStream(source.file, { start, end }),
  };
}

/** Write `from` to `res` chunk by chunk, each one handed to the socket before the next. */
async function writeFlushed(from: Readable, res: ServerResponse): Promise<void> {
  for await (const chunk of from) {
    await new Promise<void>((resolve, reject) =>
      res.write(chunk as Buffer, (error) => (error ? reject(error) : resolve())),
    );
  }
}

export async function startImageServer(): Promise<ImageServer> {
  const sources = new Map<string, Source>();
  const redirects = new Map<string, string>();
  const faults = new Map<string, { kind: 'cut' | 'stall'; bytes: number }>();
  const requests: ImageServer['requests'] = [];
  const sockets = new Set<Socket>();

  const server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    const range = req.headers.range;
    const ifRange = [req.headers['if-range'] ?? []].flat()[0];
    requests.push({ method, path, range, ifRange });
    const handle = async () => {
      const location = redirects.get(path);
      if (location) return void res.writeHead(302, { location, 'content-length': 0 }).end();
      const source = sources.get(path);
      if (!source || (method !== 'GET' && method !== 'HEAD'))
        return void res.writeHead(source ? 405 : 404, { 'content-length': 0 }).end();
      const { size, etag, lastModified, read } = await describe(source);
      const headers: Record<string, string | number> = {
        'content-type': 'application/octet-stream',
        'accept-ranges': 'bytes',
        etag,
        'last-modified': lastModified,
      };
      // A range is honoured only when If-Range (if sent) still names this version of the file.
      const asked = /^bytes=(\d+)-(\d*)$/.exec(range ?? '');
      const current = ifRange === undefined || ifRange === etag || ifRange === lastModified;
      let start = 0;
      let end = size - 1;
      let status = 200;
      if (asked && current) {
        start = Number(asked[1]);
        end = asked[2] ? Math.min(Number(asked[2]), size - 1) : size - 1;
        if (start >= size)
          return void res
            .writeHead(416, { ...headers, 'content-range': `bytes */${size}`, 'content-length': 0 })
            .end();
        status = 206;
        headers['content-range'] = `bytes ${start}-${end}/${size}`;
      }
      headers['content-length'] = end - start + 1;
      res.writeHead(status, headers);
      if (method === 'HEAD' || end < start) return void res.end();

      const fault = faults.get(path);
      if (!fault) return pipeline(read(start, end), res);
      faults.delete(path);
      const bytes = Math.min(fault.bytes, end - start + 1);
      if (bytes > 0) await writeFlushed(read(start, start + bytes - 1), res);
      if (fault.kind === 'cut') req.socket.destroy(); // the bytes are in the kernel: they arrive, then EOF
      // a stall leaves the response open: the client must notice on its own
    };
    handle().catch(() => res.destroy());
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    serve(path, source) {
      if ('file' in source) return void sources.set(path, source);
      const body = Buffer.from(source.body);
      const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
      sources.set(path, { body, etag, lastModified: new Date().toUTCString() });
    },
    redirect(path, location) {
      redirects.set(path, location);
    },
    cutAfter(path, bytes) {
      faults.set(path, { kind: 'cut', bytes });
    },
    stallAfter(path, bytes) {
      faults.set(path, { kind: 'stall', bytes });
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve, reject) =>
        server.close((error) => (error ? reject(error) : resolve())),
      );
    },
  };
}
