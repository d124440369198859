import { open, type FileHandle } from 'node:fs/promises';

// Reads what holos needs from a qcow2 header without a qemu-img process: the version, the
// virtual size, the cluster size and the backing file with its format. Layout (all
// big-endian) from QEMU's docs/interop/qcow2.txt.

export interface Qcow2Header {
  version: number;
  virtualSize: number;
  clusterBits: number;
  backingFile?: string;
  /** From the backing format header extension; absent when the image does not name one. */
  backingFormat?: string;
}

const MAGIC = 0x514649fb; // "QFI\xfb"
const V2_HEADER_LENGTH = 72;
const EXTENSION_END = 0;
const EXTENSION_BACKING_FORMAT = 0xe2792aca;
/** Enough for the header, its extensions and the backing file name of any image qemu-img makes. */
const FIRST_READ = 4096;

/** The header of a qcow2 image, or undefined if the file is not one. A missing file rejects (ENOENT). */
export async function readQcow2Header(path: string): Promise<Qcow2Header | undefined> {
  const handle = await open(path, 'r');
  try {
    const head = await readStart(handle, FIRST_READ);
    if (!isQcow2(head)) return undefined;
    const header = parseHeader(head);
    if (header) return header;
    // Extensions or the backing file name lie past the first read. QEMU keeps all of them
    // within the first cluster, so that is the most there is to read.
    const clusterBits = head.readUInt32BE(20);
    if (clusterBits < 9 || clusterBits > 21) corrupt(path, `cluster_bits ${clusterBits}`);
    const cluster = await readStart(handle, 2 ** clusterBits);
    return parseHeader(cluster) ?? corrupt(path, 'header extends past its first cluster');
  } finally {
    await handle.close();
  }
}

async function readStart(handle: FileHandle, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buffer, 0, length, 0);
  return buffer.subarray(0, bytesRead);
}

/** The magic, a version this reader knows (QCOW version 1 shares the magic but not the layout), a whole header. */
function isQcow2(head: Buffer): boolean {
  if (head.length < V2_HEADER_LENGTH || head.readUInt32BE(0) !== MAGIC) return false;
  const version = head.readUInt32BE(4);
  return version === 2 || (version === 3 && head.length >= 104);
}

/** The header, or undefined when a part of it lies past the end of `bytes`. */
function parseHeader(bytes: Buffer): Qcow2Header | undefined {
  const version = bytes.readUInt32BE(4);
  const backingFileOffset = Number(bytes.readBigUInt64BE(8));
  const backingFileSize = bytes.readUInt32BE(16);
  const header: Qcow2Header = {
    version,
    virtualSize: Number(bytes.readBigUInt64BE(24)),
    clusterBits: bytes.readUInt32BE(20),
  };

  if (backingFileOffset !== 0) {
    const end = backingFileOffset + backingFileSize;
    if (end > bytes.length) return undefined;
    header.backingFile = bytes.toString('utf8', backingFileOffset, end);
  }

  const extensionsStart = version === 2 ? V2_HEADER_LENGTH : bytes.readUInt32BE(100);
  const extensions = readExtensions(bytes, extensionsStart);
  if (!extensions) return undefined;
  const backingFormat = extensions.get(EXTENSION_BACKING_FORMAT);
  if (backingFormat) header.backingFormat = backingFormat.toString('utf8');
  return header;
}

/** Header extensions by type: `type u32, length u32, data` padded to 8 bytes, until type 0. */
function readExtensions(bytes: Buffer, start: number): Map<number, Buffer> | undefined {
  const extensions = new Map<number, Buffer>();
  for (let offset = start; ;) {
    if (offset + 8 > bytes.length) return undefined;
    const type = bytes.readUInt32BE(offset);
    if (type === EXTENSION_END) return extensions;
    const length = bytes.readUInt32BE(offset + 4);
    const dataEnd = offset + 8 + length;
    if (dataEnd > bytes.length) return undefined;
    extensions.set(type, bytes.subarray(offset + 8, dataEnd));
    offset = dataEnd + ((8 - (length % 8)) % 8);
  }
}

function corrupt(path: string, why: string): never {
  throw new Error(`${path}: corrupt qcow2 image: ${why}`);
}
