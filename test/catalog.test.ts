import assert from 'node:assert/strict';
import { test } from 'node:test';
import { catalog, catalogNames, findCatalogImage, isLocalImage, isUrlImage } from '../src/images/catalog.js';

const found = (ref: string) => {
  const match = findCatalogImage(ref);
  if (typeof match === 'string') assert.fail(`${ref}: ${match}`);
  return match;
};

test('every name has exactly one default, and its tags are unique', () => {
  for (const name of catalogNames()) {
    const images = catalog.filter((e) => e.name === name);
    assert.equal(images.filter((e) => e.isDefault).length, 1, name);
    const tags = images.flatMap((e) => e.tags);
    assert.equal(new Set(tags).size, tags.length, `${name}: ${tags.join(', ')}`);
    assert.ok(
      images.every((e) => e.tags.length > 0),
      name,
    );
  }
  assert.deepEqual(catalogNames(), [
    'alpine',
    'arch',
    'debian',
    'ubuntu',
    'fedora',
    'almalinux',
    'rocky',
    'centos-stream',
  ]);
});

test('aliases of one image resolve to one cache key and canonical name', () => {
  for (const ref of ['debian', 'debian:12', 'debian:bookworm']) {
    const match = found(ref);
    assert.equal(match.key, 'debian-12', ref);
    assert.equal(match.canonical, 'debian:12', ref);
  }
  for (const ref of ['ubuntu', 'ubuntu:noble', 'ubuntu:24.04']) {
    const match = found(ref);
    assert.equal(match.key, 'ubuntu-noble', ref);
    assert.equal(match.canonical, 'ubuntu:noble', ref);
  }
  assert.equal(found('debian:trixie').key, 'debian-13');
  assert.equal(found('ubuntu:26.04').key, 'ubuntu-resolute');
  assert.equal(found('centos-stream:10').key, 'centos-stream-10');
});

test('the tag is the one asked, or the canonical one for a bare name', () => {
  assert.equal(found('debian:bookworm').tag, 'bookworm');
  assert.equal(found('debian').tag, '12');
  assert.equal(found('ubuntu').tag, 'noble');
});

test('entries: Debian generic, Alpine on OpenRC as alpine, the rest systemd', () => {
  assert.match(found('debian:12').image.url, /\/debian-12-generic-amd64\.qcow2$/);
  assert.match(found('debian:13').image.url, /\/trixie\/latest\/debian-13-generic-amd64\.qcow2$/);
  const alpine = found('alpine').image;
  assert.equal(alpine.user, 'alpine');
  assert.equal(alpine.os, 'openrc');
  assert.equal(alpine.checksum.algo, 'sha512');
  assert.ok(catalog.filter((e) => e.name !== 'alpine').every((e) => e.os === 'systemd'));
  assert.equal(found('ubuntu').image.user, 'ubuntu');
  assert.equal(found('centos-stream').image.user, 'cloud-user');
});

test('every URL is https, every image a qcow2 with a checksum of its algo', () => {
  for (const image of catalog) {
    const label = `${image.name}:${image.tags[0]}`;
    assert.match(image.url, /^https:\/\/[a-z0-9.-]+\//, label);
    assert.match(image.checksum.url, /^https:\/\/[a-z0-9.-]+\//, label);
    assert.equal(image.format, 'qcow2', label);
    assert.ok(image.minMemoryMb >= 128, label);
    assert.ok(/x86_64|amd64/.test(image.url), label);
  }
});

test('an unknown name or tag says what there is, and where to look', () => {
  const name = findCatalogImage('gentoo');
  assert.equal(typeof name, 'string');
  assert.match(name as string, /unknown image "gentoo"/);
  for (const known of catalogNames()) assert.ok((name as string).includes(known), known);
  assert.match(name as string, /holos images/);
  assert.match(name as string, /\.\/disk\.qcow2/);

  const tag = findCatalogImage('debian:11');
  assert.equal(typeof tag, 'string');
  assert.match(tag as string, /unknown tag "11" for image "debian"/);
  assert.match(tag as string, /12, bookworm, 13, trixie/);
  assert.match(tag as string, /holos images/);
  assert.equal(typeof findCatalogImage('debian:'), 'string');
});

test('isUrlImage and isLocalImage', () => {
  for (const ref of [
    'https://example.com/disk.qcow2',
    'http://mirror.lan/x.img',
    'HTTPS://EXAMPLE.COM/A.RAW',
  ]) {
    assert.equal(isUrlImage(ref), true, ref);
    assert.equal(isLocalImage(ref), false, ref);
  }
  for (const ref of ['./disk.qcow2', '../base.raw', '/var/lib/x.img', '~/vm.qcow2', 'disk.qcow2', 'a.img']) {
    assert.equal(isLocalImage(ref), true, ref);
    assert.equal(isUrlImage(ref), false, ref);
  }
  for (const ref of ['debian', 'debian:12', 'ubuntu:24.04', 'ftp://host/x.qcow2', 'httpsx://a']) {
    assert.equal(isLocalImage(ref), false, ref);
    assert.equal(isUrlImage(ref), false, ref);
  }
});
