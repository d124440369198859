import { createHash } from 'node:crypto';
import { basename } from 'node:path';
import { findCatalogImage } from '../../src/images/catalog.js';
import { hashFile } from '../../src/util/digest.js';
import { mirrored } from '../../src/images/source.js';
import { startImageServer, type ImageServer } from './image-server.js';

// A distribution mirror on 127.0.0.1 for HOLOS_IMAGE_MIRROR: a file served as a catalog
// image at its upstream path, beside a checksum file in that distribution's own format.

const digests = new Map<string, Promise<string>>();

/** The file's digest, hashed once per test process. */
export function digestOf(file: string, algo: 'sha256' | 'sha512'): Promise<string> {
  const id = `${algo}:${file}`;
  let found = digests.get(id);
  if (!found) {
    found = hashFile(file, algo);
    digests.set(id, found);
  }
  return found;
}

export interface Mirror {
  server: ImageServer;
  /** The value of HOLOS_IMAGE_MIRROR. */
  url: string;
  /** Serves `file` as the catalog image `ref` (its checksum file lists the file's digest). */
  serveAs(ref: string, file: string, options?: { digest?: string }): Promise<{ url: string; digest: string }>;
  /** The path on the server of the image `ref`. */
  imagePath(ref: string): string;
  /** GET requests for the image `ref` (not its checksum file). */
  imageRequests(ref: string): { method: string; path: string; range?: string }[];
  close(): Promise<void>;
}

export async function startMirror(): Promise<Mirror> {
  const server = await startImageServer();
  const url = `${server.url}/mirror`;
  const pathOf = (upstream: string) => new URL(mirrored(upstream, url)).pathname;
  const entryOf = (ref: string) => {
    const found = findCatalogImage(ref);
    if (typeof found === 'string') throw new Error(found);
    return found.image;
  };
  return {
    server,
    url,
    async serveAs(ref, file, options = {}) {
      const entry = entryOf(ref);
      const hex = options.digest ?? (await digestOf(file, entry.checksum.algo));
      const name = basename(new URL(entry.url).pathname);
      // GNU style, with a near-miss name first, as Debian's SHA512SUMS lists several files.
      const other = createHash(entry.checksum.algo).update(name).digest('hex');
      server.serve(pathOf(entry.url), { file });
      server.serve(pathOf(entry.checksum.url), {
        body: `${other}  ${name}.tar.xz\n${hex}  ${name}\n`,
      });
      return { url: entry.url, digest: `${entry.checksum.algo}:${hex}` };
    },
    imagePath: (ref) => pathOf(entryOf(ref).url),
    imageRequests(ref) {
      const path = pathOf(entryOf(ref).url);
      return server.requests.filter((r) => r.path === path && r.method === 'GET');
    },
    close: () => server.close(),
  };
}
