import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { readQcow2Header, type Qcow2Header } from '../src/observe/qcow2.js';

const workDir = mkdtempSync(join(tmpdir(), 'holos-qcow2-'));
after(() => rmSync(workDir, { recursive: true, force: true }));

const qemuImg = (...args: string[]) => execFileSync('qemu-img', args, { cwd: workDir, encoding: 'utf8' });

function create(name: string, size: string | undefined, ...options: string[]): string {
  const path = join(workDir, name);
  qemuImg('create', '-q', '-f', 'qcow2', ...options, path, ...(size ? [size] : []));
  return path;
}

/** What `qemu-img info` says, in the reader's terms: the oracle. */
function oracle(path: string): Qcow2Header {
  const info = JSON.parse(qemuImg('info', '--output=json', path)) as {
    'virtual-size': number;
    'cluster-size': number;
    'backing-filename'?: string;
    'backing-filename-format'?: string;
    'format-specific': { data: { compat: string } };
  };
  return {
    version: info['format-specific'].data.compat === '0.10' ? 2 : 3,
    virtualSize: info['virtual-size'],
    clusterBits: Math.log2(info['cluster-size']),
    ...(info['backing-filename'] !== undefined && { backingFile: info['backing-filename'] }),
    ...(info['backing-filename-format'] !== undefined && { backingFormat: info['backing-filename-format'] }),
  };
}

async function assertMatchesQemuImg(path: string): Promise<Qcow2Header> {
  const header = await readQcow2Header(path);
  assert.deepEqual(header, oracle(path));
  return header;
}

const base = create('base.qcow2', '1G');
const rawBase = join(workDir, 'base.raw');
writeFileSync(rawBase, Buffer.alloc(1024 * 1024));

test('images without a backing file, in several sizes', async () => {
  for (const size of ['1M', '513M', '10G', '20G', '3T', '1000000512']) {
    const header = await assertMatchesQemuImg(create(`plain-${size}.qcow2`, size));
    assert.equal(header.backingFile, undefined);
    assert.equal(header.version, 3);
  }
  assert.equal((await readQcow2Header(join(workDir, 'plain-10G.qcow2')))?.virtualSize, 10 * 2 ** 30);
});

test('an overlay on a qcow2 base records the backing file and format', async () => {
  const header = await assertMatchesQemuImg(create('overlay.qcow2', undefined, '-b', base, '-F', 'qcow2'));
  assert.equal(header.backingFile, base);
  assert.equal(header.backingFormat, 'qcow2');
  assert.equal(header.virtualSize, 2 ** 30);
});

test('an overlay on a raw base, bigger than its base, with a relative backing name', async () => {
  const header = await assertMatchesQemuImg(create('raw-overlay.qcow2', '8G', '-b', 'base.raw', '-F', 'raw'));
  assert.deepEqual(header, {
    version: 3,
    virtualSize: 8 * 2 ** 30,
    clusterBits: 16,
    backingFile: 'base.raw',
    backingFormat: 'raw',
  });
});

test('a backing file without a recorded format (as old images have)', async () => {
  const path = create('no-format.qcow2', undefined, '-b', base, '-F', 'qcow2');
  // qemu-img 7 refuses to write such an image; turn the backing format extension into an
  // unknown one, which QEMU skips.
  const bytes = readFileSync(path);
  const at = bytes.indexOf(Buffer.from([0xe2, 0x79, 0x2a, 0xca]), 104);
  bytes.writeUInt32BE(0x0badcafe, at);
  writeFileSync(path, bytes);
  const header = await assertMatchesQemuImg(path);
  assert.equal(header.backingFile, base);
  assert.equal(header.backingFormat, undefined);
});

test('version 2 (compat=0.10) images and other cluster sizes', async () => {
  const v2 = await assertMatchesQemuImg(
    create('v2.qcow2', '2G', '-o', 'compat=0.10', '-b', base, '-F', 'qcow2'),
  );
  assert.equal(v2.version, 2);
  assert.equal(v2.backingFormat, 'qcow2');
  assert.equal(
    (await assertMatchesQemuImg(create('small-clusters.qcow2', '1G', '-o', 'cluster_size=4096'))).clusterBits,
    12,
  );
  assert.equal(
    (await assertMatchesQemuImg(create('big-clusters.qcow2', '1G', '-o', 'cluster_size=2M'))).clusterBits,
    21,
  );
});

test('a backing file name past the first 4 KiB is still found', async () => {
  const path = create('far-name.qcow2', '1G', '-b', base, '-F', 'qcow2');
  // Move the name to byte 5000 of the 64 KiB first cluster; qemu-img info confirms the image stays valid.
  const bytes = readFileSync(path);
  const offset = Number(bytes.readBigUInt64BE(8));
  const length = bytes.readUInt32BE(16);
  bytes.copy(bytes, 5000, offset, offset + length);
  bytes.fill(0, offset, offset + length);
  bytes.writeBigUInt64BE(5000n, 8);
  writeFileSync(path, bytes);
  assert.equal((await assertMatchesQemuImg(path)).backingFile, base);
});

test('a file that is not qcow2 gives undefined, a missing one rejects with ENOENT', async () => {
  assert.equal(await readQcow2Header(rawBase), undefined);
  const empty = join(workDir, 'empty');
  writeFileSync(empty, '');
  assert.equal(await readQcow2Header(empty), undefined);
  const justMagic = join(workDir, 'just-magic');
  writeFileSync(justMagic, 'QFI\xfb', 'latin1');
  assert.equal(await readQcow2Header(justMagic), undefined);
  await assert.rejects(readQcow2Header(join(workDir, 'missing.qcow2')), { code: 'ENOENT' });
});
