import { createHash } from 'node:crypto';
import { findCatalogImage, isUrlImage, type Algo } from './catalog.js';

// Where a base image comes from: a catalog entry (its official URL and published checksum) or
// an `image: https://…` URL. Pure: the mirror is applied where a download starts (pull.ts).

export interface ImageSource {
  /** The image's name in plans, the cache and the lock file: `debian:12` (canonical tag), or the URL. */
  name: string;
  /** The cache's file-name stem: `debian-12`, `url-<base>-<8 hex of sha256(url)>`. */
  key: string;
  url: string;
  /** Where the digest is published; undefined for a URL image (the lock file pins it). */
  checksum?: { url: string; algo: Algo };
  format: 'qcow2' | 'raw';
  /** The catalog's smallest sensible memory for it (MiB). */
  minMemoryMb?: number;
}

/** The source of a catalog name or URL; a string is a one-line error (unknown name or tag). */
export function sourceOf(ref: string, format?: 'qcow2' | 'raw'): ImageSource | string {
  if (isUrlImage(ref)) {
    const base = (new URL(ref).pathname.split('/').pop() ?? '')
      .replace(/\.(qcow2|img|raw)$/i, '')
      .replace(/[^A-Za-z0-9._-]+/g, '-')
      .slice(0, 40);
    const hash = createHash('sha256').update(ref).digest('hex').slice(0, 8);
    return {
      name: ref,
      key: `url-${base ? `${base}-` : ''}${hash}`,
      url: ref,
      format: format ?? (/\.raw$/i.test(ref) ? 'raw' : 'qcow2'),
    };
  }
  const found = findCatalogImage(ref);
  if (typeof found === 'string') return found;
  return {
    name: found.canonical,
    key: found.key,
    url: found.image.url,
    checksum: found.image.checksum,
    format: format ?? found.image.format,
    minMemoryMb: found.image.minMemoryMb,
  };
}

/**
 * `HOLOS_IMAGE_MIRROR=http://mirror.lan/images` serves every upstream file under
 * `<mirror>/<host>/<path>`: one tree for all distributions, laid out as a plain `wget -x` of the
 * upstream URLs would be, for air-gapped hosts (and the tests' local server).
 */
export function mirrored(url: string, mirror = process.env.HOLOS_IMAGE_MIRROR): string {
  if (!mirror) return url;
  const upstream = new URL(url);
  return `${mirror.replace(/\/+$/, '')}/${upstream.host}${upstream.pathname}${upstream.search}`;
}

/** The distinct catalog and URL images of some services (local files have no source). */
export function sourcesOf(services: readonly { image: { source?: ImageSource } }[]): ImageSource[] {
  const sources = new Map<string, ImageSource>();
  for (const { image } of services) if (image.source) sources.set(image.source.key, image.source);
  return [...sources.values()];
}
