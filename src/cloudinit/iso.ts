import { createHash } from 'node:crypto';

// The NoCloud seed: an ISO 9660 image labelled `cidata` holding user-data, meta-data and
// network-config in one root directory. ISO 9660 level 1 names are 8.3 upper case
// (USER_DAT.;1), so a Joliet tree carries the real names; Linux reads Joliet when there is
// no Rock Ridge. Written in process, byte for byte the same for the same input (fixed
// timestamps, files sorted by name), because holos names seed files by content hash.
//
// Layout, in 2048-byte sectors:
//   0-15 system area · 16 primary descriptor · 17 Joliet descriptor · 18 terminator
//   19-22 path tables (primary L, M; Joliet L, M) · root directories · file data

export interface SeedFile {
  name: string;
  content: string | Uint8Array;
}

const SECTOR = 2048;
const FIRST_PATH_TABLE = 19;
const ROOT_DIRECTORY = FIRST_PATH_TABLE + 4;
const JOLIET_UCS2_LEVEL_3 = '%/E';
/** 1970-01-01 00:00:00 UTC: a fixed date, so the same files make the same bytes. */
const RECORDING_DATE = Buffer.from([70, 1, 1, 0, 0, 0, 0]);
const VOLUME_DATE = '1970010100000000';
const UNSET_VOLUME_DATE = '0000000000000000';
const DIRECTORY_FLAG = 0x02;

type Encoding = 'ascii' | 'ucs2';

interface Extent {
  sector: number;
  size: number;
}

interface Entry extends Extent {
  id: Buffer;
  directory?: boolean;
}

interface Tree {
  encoding: Encoding;
  root: Extent;
  pathTable: { little: number; big: number };
  files: Entry[];
}

/** A NoCloud seed image of `files` (names as the guest sees them) with volume label `volumeId`. */
export function buildSeedIso(files: readonly SeedFile[], volumeId = 'cidata'): Buffer {
  checkVolumeId(volumeId);
  const sorted = files
    .map((file) => ({ name: checkName(file.name), data: toBytes(file.content) }))
    .sort((a, b) => Buffer.compare(ucs2(a.name), ucs2(b.name)));
  checkUnique(sorted.map((file) => file.name));

  const primaryIds = level1Names(sorted.map((file) => file.name)).map((id) => Buffer.from(id, 'ascii'));
  const jolietIds = sorted.map((file) => ucs2(file.name));
  const primaryRoot = { sector: ROOT_DIRECTORY, size: directorySize(primaryIds) };
  const jolietRoot = {
    sector: primaryRoot.sector + sectors(primaryRoot.size),
    size: directorySize(jolietIds),
  };

  let next = jolietRoot.sector + sectors(jolietRoot.size);
  const data = sorted.map((file) => {
    // An empty file takes no sector: it points at sector 0, which is always inside the image,
    // and with a size of 0 nothing is read there.
    const extent = { sector: file.data.length ? next : 0, size: file.data.length };
    next += sectors(file.data.length);
    return extent;
  });
  const totalSectors = next;

  const primary: Tree = {
    encoding: 'ascii',
    root: primaryRoot,
    pathTable: { little: FIRST_PATH_TABLE, big: FIRST_PATH_TABLE + 1 },
    files: primaryIds.map((id, i) => ({ id, ...data[i]! })).sort((a, b) => Buffer.compare(a.id, b.id)),
  };
  const joliet: Tree = {
    encoding: 'ucs2',
    root: jolietRoot,
    pathTable: { little: FIRST_PATH_TABLE + 2, big: FIRST_PATH_TABLE + 3 },
    files: jolietIds.map((id, i) => ({ id, ...data[i]! })),
  };

  const image = Buffer.alloc(totalSectors * SECTOR);
  const at = (sector: number) => sector * SECTOR;
  volumeDescriptor(primary, volumeId, totalSectors).copy(image, at(16));
  volumeDescriptor(joliet, volumeId, totalSectors).copy(image, at(17));
  terminator().copy(image, at(18));
  for (const tree of [primary, joliet]) {
    pathTable(tree.root.sector, 'LE').copy(image, at(tree.pathTable.little));
    pathTable(tree.root.sector, 'BE').copy(image, at(tree.pathTable.big));
    directory(tree.root, tree.files).copy(image, at(tree.root.sector));
  }
  sorted.forEach((file, i) => image.set(file.data, at(data[i]!.sector)));
  return image;
}

/** sha256 (hex) over the files' names and contents, independent of their order. */
export function seedHash(files: readonly SeedFile[]): string {
  const hash = createHash('sha256');
  const sorted = files.map((file) => ({ name: file.name, data: toBytes(file.content) }));
  sorted.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const { name, data } of sorted) {
    // Name and length first, so no two different sets of files hash the same bytes.
    hash.update(`${name}\0${data.length}\0`);
    hash.update(data);
  }
  return hash.digest('hex');
}

const toBytes = (content: string | Uint8Array) =>
  typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
const sectors = (bytes: number) => Math.ceil(bytes / SECTOR);
const ucs2 = (text: string) => Buffer.from(text, 'utf16le').swap16();

function checkVolumeId(volumeId: string): void {
  // Joliet stores the label in 32 bytes of UCS-2: 16 characters.
  if (!/^[\x21-\x7e]{1,16}$/.test(volumeId)) {
    throw new RangeError(`seed ISO volume id must be 1-16 ASCII characters: ${volumeId}`);
  }
}

function checkName(name: string): string {
  // Joliet allows 64 characters and forbids these and control characters; '/' would need subdirectories.
  const forbidden = /[/\\*:;?"<>|]/.test(name) || [...name].some((char) => char < ' ');
  if (name.length < 1 || name.length > 64 || forbidden || name === '.' || name === '..') {
    throw new RangeError(
      `seed ISO file name must be 1-64 characters, without / \\ * : ; ? " < > |: ${JSON.stringify(name)}`,
    );
  }
  return name;
}

function checkUnique(names: string[]): void {
  const duplicate = names.find((name, i) => names.indexOf(name) !== i);
  if (duplicate !== undefined) throw new RangeError(`seed ISO file listed twice: ${duplicate}`);
}

/** ISO 9660 level 1 names (`NAME8.EXT;1`, upper case, digits, `_`), made unique with a numeric tail. */
function level1Names(names: readonly string[]): string[] {
  const dChars = (text: string) => text.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
  const taken = new Set<string>();
  return names.map((name) => {
    const dot = name.lastIndexOf('.');
    const stem = dChars(dot > 0 ? name.slice(0, dot) : name).slice(0, 8) || '_';
    const extension = dot > 0 ? dChars(name.slice(dot + 1)).slice(0, 3) : '';
    let id = `${stem}.${extension}`;
    for (let n = 1; taken.has(id); n++) id = `${stem.slice(0, 8 - String(n).length)}${n}.${extension}`;
    taken.add(id);
    return `${id};1`;
  });
}

/** A directory record (ECMA-119 9.1). Identifiers 0x00 and 0x01 are `.` and `..`. */
function directoryRecord(entry: Entry): Buffer {
  const length = 33 + entry.id.length + (entry.id.length % 2 === 0 ? 1 : 0);
  const record = Buffer.alloc(length);
  record[0] = length;
  bothEndian32(record, 2, entry.sector);
  bothEndian32(record, 10, entry.size);
  RECORDING_DATE.copy(record, 18);
  record[25] = entry.directory ? DIRECTORY_FLAG : 0;
  bothEndian16(record, 28, 1); // volume sequence number
  record[32] = entry.id.length;
  entry.id.copy(record, 33);
  return record;
}

const self = (root: Extent): Entry => ({ id: Buffer.from([0]), directory: true, ...root });
const parent = (root: Extent): Entry => ({ id: Buffer.from([1]), directory: true, ...root });

/** Where each record of a directory goes: a record never crosses a sector boundary. */
function packRecords(lengths: readonly number[]): { offsets: number[]; size: number } {
  const offsets: number[] = [];
  let offset = 0;
  for (const length of lengths) {
    if ((offset % SECTOR) + length > SECTOR) offset = sectors(offset) * SECTOR;
    offsets.push(offset);
    offset += length;
  }
  return { offsets, size: sectors(offset) * SECTOR };
}

/** The size of a root directory, known before any extent is: it depends only on the identifiers. */
function directorySize(ids: readonly Buffer[]): number {
  const placeholder = { sector: 0, size: 0 };
  const entries = [self(placeholder), parent(placeholder), ...ids.map((id) => ({ id, ...placeholder }))];
  return packRecords(entries.map((entry) => directoryRecord(entry).length)).size;
}

function directory(root: Extent, files: readonly Entry[]): Buffer {
  const records = [self(root), parent(root), ...files].map(directoryRecord);
  const { offsets, size } = packRecords(records.map((record) => record.length));
  const bytes = Buffer.alloc(size);
  offsets.forEach((offset, i) => records[i]!.copy(bytes, offset));
  return bytes;
}

/** The path table of a tree that is a root directory alone (ECMA-119 9.4). */
function pathTable(rootSector: number, endian: 'LE' | 'BE'): Buffer {
  const table = Buffer.alloc(10);
  table[0] = 1; // identifier length: the root's identifier is the single byte 0x00
  // The root's parent is itself, directory number 1.
  if (endian === 'LE') {
    table.writeUInt32LE(rootSector, 2);
    table.writeUInt16LE(1, 6);
  } else {
    table.writeUInt32BE(rootSector, 2);
    table.writeUInt16BE(1, 6);
  }
  return table;
}

/** The primary (type 1) or Joliet supplementary (type 2) volume descriptor (ECMA-119 8.4, 8.5). */
function volumeDescriptor(tree: Tree, volumeId: string, totalSectors: number): Buffer {
  const descriptor = Buffer.alloc(SECTOR);
  const text = (offset: number, length: number, value = '') =>
    textField(descriptor, offset, length, value, tree.encoding);
  descriptor[0] = tree.encoding === 'ascii' ? 1 : 2;
  descriptor.write('CD001', 1, 'ascii');
  descriptor[6] = 1;
  text(8, 32); // system identifier
  text(40, 32, volumeId);
  bothEndian32(descriptor, 80, totalSectors);
  if (tree.encoding === 'ucs2') descriptor.write(JOLIET_UCS2_LEVEL_3, 88, 'ascii');
  bothEndian16(descriptor, 120, 1); // volume set size
  bothEndian16(descriptor, 124, 1); // volume sequence number
  bothEndian16(descriptor, 128, SECTOR);
  bothEndian32(descriptor, 132, pathTable(tree.root.sector, 'LE').length);
  descriptor.writeUInt32LE(tree.pathTable.little, 140);
  descriptor.writeUInt32BE(tree.pathTable.big, 148);
  directoryRecord(self(tree.root)).copy(descriptor, 156);
  text(190, 128); // volume set
  text(318, 128); // publisher
  text(446, 128); // data preparer
  text(574, 128); // application
  text(702, 37); // copyright file
  text(739, 37); // abstract file
  text(776, 37); // bibliographic file
  volumeDate(descriptor, 813, VOLUME_DATE); // created
  volumeDate(descriptor, 830, VOLUME_DATE); // modified
  volumeDate(descriptor, 847, UNSET_VOLUME_DATE); // expires
  volumeDate(descriptor, 864, UNSET_VOLUME_DATE); // effective
  descriptor[881] = 1; // file structure version
  return descriptor;
}

function terminator(): Buffer {
  const descriptor = Buffer.alloc(SECTOR);
  descriptor[0] = 255;
  descriptor.write('CD001', 1, 'ascii');
  descriptor[6] = 1;
  return descriptor;
}

/** A text field padded with spaces: ASCII, or UCS-2 big-endian for Joliet (an odd last byte stays 0). */
function textField(buffer: Buffer, offset: number, length: number, value: string, encoding: Encoding): void {
  if (encoding === 'ascii') {
    buffer.write(value.padEnd(length, ' '), offset, length, 'ascii');
  } else {
    ucs2(value.padEnd(Math.floor(length / 2), ' ')).copy(buffer, offset);
  }
}

/** `YYYYMMDDHHMMSScc` digits and a time zone offset byte (0: UTC). */
function volumeDate(buffer: Buffer, offset: number, digits: string): void {
  buffer.write(digits, offset, 16, 'ascii');
  buffer[offset + 16] = 0;
}

function bothEndian32(buffer: Buffer, offset: number, value: number): void {
  buffer.writeUInt32LE(value, offset);
  buffer.writeUInt32BE(value, offset + 4);
}

function bothEndian16(buffer: Buffer, offset: number, value: number): void {
  buffer.writeUInt16LE(value, offset);
  buffer.writeUInt16BE(value, offset + 2);
}
