import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { buildSeedIso, seedHash, type SeedFile } from '../src/cloudinit/iso.js';

const workDir = mkdtempSync(join(tmpdir(), 'holos-iso-'));
after(() => rmSync(workDir, { recursive: true, force: true }));

const run = (command: string, ...args: string[]) => execFileSync(command, args, { encoding: 'utf8' });
const runBytes = (command: string, ...args: string[]) =>
  execFileSync(command, args, { maxBuffer: 64 * 1024 * 1024 });

/** Bytes that are not valid UTF-8 text and change at every position, to catch any shifted sector. */
const pattern = (length: number) => Buffer.from(Array.from({ length }, (_, i) => (i * 7 + (i >> 11)) % 256));

const seed: SeedFile[] = [
  { name: 'user-data', content: '#cloud-config\nhostname: web-0\nssh_pwauth: "no"\n' },
  { name: 'meta-data', content: 'instance-id: web-0\nlocal-hostname: web-0\n' },
  { name: 'network-config', content: 'version: 2\nethernets: {}\n' },
  { name: 'empty', content: '' },
  { name: 'two-sectors', content: pattern(2049) },
  { name: 'large.bin', content: pattern(100 * 1024 + 3) },
  { name: 'exactly-one-sector', content: 'x'.repeat(2048) },
];

function writeIso(name: string, files: SeedFile[], volumeId?: string): string {
  const path = join(workDir, name);
  writeFileSync(path, buildSeedIso(files, volumeId));
  return path;
}

const iso = writeIso('seed.iso', seed);

test('isoinfo sees the volume id cidata and a Joliet tree', () => {
  const description = run('isoinfo', '-d', '-i', iso);
  assert.match(description, /^Volume id: cidata$/m);
  assert.match(description, /Joliet with UCS level 3 found/);
  assert.match(description, /Logical block size is: 2048/);
});

test('the Joliet tree keeps the real names and sizes', () => {
  const listing = run('isoinfo', '-J', '-l', '-i', iso);
  for (const file of seed) {
    const size = Buffer.byteLength(file.content);
    assert.match(listing, new RegExp(`\\s${size} .*\\s${file.name.replace('.', '\\.')} *$`, 'm'), file.name);
  }
});

test('every file reads back with its exact content', () => {
  for (const file of seed) {
    const content = runBytes('isoinfo', '-J', '-i', iso, '-x', `/${file.name}`);
    assert.deepEqual(content, Buffer.from(file.content), file.name);
  }
});

test('the primary tree has unique ISO 9660 level 1 names', () => {
  const listing = run('isoinfo', '-l', '-i', iso);
  for (const name of [
    'USER_DAT.;1',
    'META_DAT.;1',
    'NETWORK_.;1',
    'EMPTY.;1',
    'TWO_SECT.;1',
    'LARGE.BIN;1',
    'EXACTLY_.;1',
  ]) {
    assert.match(listing, new RegExp(`\\s${name.replace(/[.;]/g, '\\$&')} *$`, 'm'), name);
  }
  const clash = writeIso('clash.iso', [
    { name: 'network-config', content: 'a' },
    { name: 'network-config-2', content: 'b' },
    { name: 'network.cfg', content: 'c' },
  ]);
  const names = run('isoinfo', '-l', '-i', clash).match(/\S+;1/g);
  assert.deepEqual(names?.sort(), ['NETWORK1.;1', 'NETWORK_.;1', 'NETWORK.CFG;1'].sort());
  assert.equal(runBytes('isoinfo', '-J', '-i', clash, '-x', '/network-config-2').toString(), 'b');
});

test('xorriso reads the image and its names', () => {
  const output = run('xorriso', '-indev', iso, '-ls');
  for (const file of seed) assert.match(output, new RegExp(`^'${file.name}'$`, 'm'));
  // Reads every block of the image; a region that is not good would be flagged.
  const check = execFileSync('xorriso', ['-indev', iso, '-check_media', '--'], {
    encoding: 'utf8',
    stdio: 'pipe',
  });
  assert.match(check, /Media region : +0 , +\d+ , \+ good/);
  const extracted = join(workDir, 'extracted-large.bin');
  execFileSync('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', '/large.bin', extracted], {
    stdio: 'ignore',
  });
  assert.deepEqual(readFileSync(extracted), Buffer.from(seed[5]!.content));
});

test('blkid finds the label cloud-init looks for', () => {
  const probe = run('blkid', '-p', iso);
  assert.match(probe, /LABEL="cidata"/);
  assert.match(probe, /TYPE="iso9660"/);
  assert.match(run('blkid', '-p', writeIso('label.iso', seed.slice(0, 2), 'CIDATA')), /LABEL="CIDATA"/);
});

test('the same files give the same bytes, in any order', () => {
  const first = buildSeedIso(seed);
  assert.deepEqual(buildSeedIso([...seed].reverse()), first);
  assert.notDeepEqual(
    buildSeedIso([...seed.slice(1), { name: 'user-data', content: '#cloud-config\n' }]),
    first,
  );
  assert.equal(first.length % 2048, 0);
});

test('a seed with no files is still a readable, empty volume', () => {
  const path = writeIso('nothing.iso', []);
  assert.match(run('isoinfo', '-d', '-i', path), /^Volume id: cidata$/m);
  assert.doesNotMatch(run('isoinfo', '-J', '-l', '-i', path), /;1|-data/);
});

test('a directory longer than one sector keeps its records within sectors', () => {
  const many = Array.from({ length: 60 }, (_, i) => ({
    name: `file-number-${String(i).padStart(3, '0')}.txt`,
    content: `${i}\n`,
  }));
  const path = writeIso('many.iso', many);
  const listing = run('isoinfo', '-J', '-l', '-i', path);
  for (const file of many)
    assert.match(listing, new RegExp(`\\s${file.name.replace('.', '\\.')}`), file.name);
  assert.equal(runBytes('isoinfo', '-J', '-i', path, '-x', '/file-number-059.txt').toString(), '59\n');
});

test('names and labels that an ISO cannot hold are refused', () => {
  assert.throws(() => buildSeedIso([{ name: 'dir/user-data', content: '' }]), /file name/);
  assert.throws(() => buildSeedIso([{ name: 'x'.repeat(65), content: '' }]), /file name/);
  assert.throws(() => buildSeedIso([{ name: '', content: '' }]), /file name/);
  assert.throws(
    () =>
      buildSeedIso([
        { name: 'a', content: '' },
        { name: 'a', content: 'b' },
      ]),
    /twice: a/,
  );
  assert.throws(() => buildSeedIso([], 'a-label-longer-than-16'), /volume id/);
});

test('seedHash depends on names and contents, not on order', () => {
  const hash = seedHash(seed);
  assert.match(hash, /^[0-9a-f]{64}$/);
  assert.equal(seedHash([...seed].reverse()), hash);
  assert.equal(seedHash(seed.map((file) => ({ ...file, content: Buffer.from(file.content) }))), hash);
  assert.notEqual(seedHash([{ name: 'ab', content: 'c' }]), seedHash([{ name: 'a', content: 'bc' }]));
  assert.notEqual(seedHash(seed.slice(1)), hash);
});
