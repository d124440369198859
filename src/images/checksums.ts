import type { Algo } from './catalog.js';

// The checksum files distributions publish beside their cloud images, read for one file's digest:
// - GNU coreutils lists, `<hex>  <file>` or `<hex> *<file>` (Debian SHA512SUMS, Ubuntu SHA256SUMS),
//   with `\` before the digest when the name is escaped; also `<hex> <file>` (BSD `sha256 -r`);
// - BSD tags, `SHA256 (<file>) = <hex>` (Fedora's CHECKSUM inside a PGP clear-signed message,
//   Rocky, AlmaLinux and CentOS Stream), with `# <file>: <n> bytes` comments between;
// - per-file files: one `<hex>  <file>` line (Alpine's .sha512, Arch's .SHA256) or a bare `<hex>`.
// The name must equal the file's base name: a substring match took `x.qcow2.tar.xz` for `x.qcow2`.

/** The most of a checksum file holos reads; the largest real ones (Ubuntu's) are a few KiB. */
export const maxChecksumBytes = 1 << 20;

const hexLength: Record<Algo, number> = { sha256: 64, sha512: 128 };

/** What a BSD tag names; tags of other algorithms (MD5, SHA1, SHA384) map to nothing of ours. */
const tagAlgo: Record<string, Algo> = { SHA256: 'sha256', SHA512: 'sha512' };

interface Entry {
  hex: string;
  /** Undefined for a bare digest. */
  name?: string;
  /** The BSD tag's algorithm; undefined for other formats, null for a tag that is none of ours. */
  algo?: Algo | null;
}

const baseName = (name: string) => name.slice(name.lastIndexOf('/') + 1);

/** GNU's escaped form: `\\` for a backslash and `\n` for a newline in the name. */
const unescape = (name: string) => name.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));

function parseLine(line: string): Entry | undefined {
  const bsd = /^([A-Za-z0-9-]+) ?\((.*)\) ?= ?([0-9A-Fa-f]+)$/.exec(line);
  if (bsd) return { hex: bsd[3]!, name: bsd[2]!, algo: tagAlgo[bsd[1]!.toUpperCase()] ?? null };
  const gnu = /^(\\?)([0-9A-Fa-f]+) [ *]?(.+)$/.exec(line);
  if (gnu) return { hex: gnu[2]!, name: gnu[1] ? unescape(gnu[3]!) : gnu[3]! };
  if (/^[0-9A-Fa-f]+$/.test(line)) return { hex: line };
  return undefined;
}

/**
 * The hex digest for `fileName` (its base name) in a checksum file's text, lowercase; or
 * undefined when the text has none of the right length for `algo`. A file that names `fileName`
 * nowhere still answers when it holds exactly one digest, of the right length: a per-file file
 * (`<image>.sha512`) that is a bare digest or names the dated file a `latest` link points at.
 * Two different digests for the one name answer nothing.
 */
export function findDigest(text: string, fileName: string, algo: Algo): string | undefined {
  const want = baseName(fileName);
  const length = hexLength[algo];
  const matched = new Set<string>();
  const all = new Set<string>();
  let named = false;
  let signature = false;
  for (const raw of text.split(/\r\n|\n|\r/)) {
    const line = raw.trim();
    // The signature block of a clear-signed file is base64, never a checksum line.
    if (line === '-----BEGIN PGP SIGNATURE-----') signature = true;
    else if (line === '-----END PGP SIGNATURE-----') signature = false;
    if (signature || line === '' || line.startsWith('#')) continue;
    const entry = parseLine(line);
    if (!entry) continue;
    const hex = entry.hex.toLowerCase();
    const fits = hex.length === length && (entry.algo === undefined || entry.algo === algo);
    // A digest tagged with another algorithm keeps the one-digest answer from guessing.
    all.add(fits ? hex : `-${hex}`);
    if (entry.name === undefined || baseName(entry.name) !== want) continue;
    named = true;
    if (fits) matched.add(hex);
  }
  if (matched.size === 1) return [...matched][0];
  if (named || all.size !== 1) return undefined;
  const [only] = all;
  return only!.startsWith('-') ? undefined : only;
}
