import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { findDigest, maxChecksumBytes } from '../src/images/checksums.js';

// The files' layouts are the distributions' own (names, order, comments, markers, PGP armour);
// the digests are made up, one per name, so every line is told apart.
const d256 = (label: string) => createHash('sha256').update(label).digest('hex');
const d512 = (label: string) => createHash('sha512').update(label).digest('hex');

const debianSums = [
  'debian-12-generic-amd64.json',
  'debian-12-generic-amd64.qcow2',
  'debian-12-generic-amd64.qcow2.tar.xz',
  'debian-12-generic-amd64.raw',
  'debian-12-generic-amd64.tar.xz',
  'debian-12-generic-amd64-daily.qcow2',
  'debian-12-genericcloud-amd64.qcow2',
  'debian-12-nocloud-amd64.qcow2',
]
  .map((name) => `${d512(name)}  ${name}\n`)
  .join('');

const ubuntuSums = [
  'noble-server-cloudimg-amd64-azure.vhd.tar.gz',
  'noble-server-cloudimg-amd64-disk-kvm.img',
  'noble-server-cloudimg-amd64-lxd.tar.xz',
  'noble-server-cloudimg-amd64-root.tar.xz',
  'noble-server-cloudimg-amd64.img',
  'noble-server-cloudimg-amd64.manifest',
  'noble-server-cloudimg-amd64.squashfs',
  'noble-server-cloudimg-arm64.img',
]
  .map((name) => `${d256(name)} *${name}\n`)
  .join('');

const fedoraFiles = [
  'Fedora-Cloud-Base-AmazonEC2-43-1.6.x86_64.raw.xz',
  'Fedora-Cloud-Base-Azure-43-1.6.x86_64.vhdfixed.xz',
  'Fedora-Cloud-Base-GCE-43-1.6.x86_64.tar.gz',
  'Fedora-Cloud-Base-Generic-43-1.6.x86_64.qcow2',
  'Fedora-Cloud-Base-UKI-43-1.6.x86_64.qcow2',
];
const fedoraChecksum = `-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA256

${fedoraFiles.map((name, i) => `# ${name}: ${436207616 + i * 4096} bytes\nSHA256 (${name}) = ${d256(name)}\n`).join('')}-----BEGIN PGP SIGNATURE-----

iQIzBAEBCAAdFiEEyVhH3+ZQZ1tbJQn1hdmsw8aa5XsFAmjxV8sACgkQhdmsw8aa
5XsR3g/+KB9mq3dGm7PTk2UQ5VvEaZ4aJkR+zQYc0uWd4w1kqG0e3c9n5r7TQKx0
=Xq1k
-----END PGP SIGNATURE-----
`;

test('GNU lists with two spaces: Debian SHA512SUMS, by exact base name', () => {
  const want = 'debian-12-generic-amd64.qcow2';
  assert.equal(findDigest(debianSums, want, 'sha512'), d512(want));
  assert.equal(
    findDigest(debianSums, 'https://cloud.debian.org/x/debian-12-generic-amd64.qcow2', 'sha512'),
    d512(want),
  );
  assert.equal(
    findDigest(debianSums, 'debian-12-generic-amd64.qcow2.tar.xz', 'sha512'),
    d512(`${want}.tar.xz`),
  );
  assert.equal(findDigest(debianSums, 'debian-12-generic-amd64', 'sha512'), undefined);
  assert.equal(findDigest(debianSums, 'debian-13-generic-amd64.qcow2', 'sha512'), undefined);
  // Listed, but the digest is the wrong length for the algorithm asked.
  assert.equal(findDigest(debianSums, want, 'sha256'), undefined);
});

test('GNU lists with binary markers: Ubuntu SHA256SUMS', () => {
  const want = 'noble-server-cloudimg-amd64.img';
  assert.equal(findDigest(ubuntuSums, want, 'sha256'), d256(want));
  assert.equal(findDigest(ubuntuSums, 'server-cloudimg-amd64.img', 'sha256'), undefined);
  assert.equal(findDigest(ubuntuSums, 'noble-server-cloudimg-amd64.im', 'sha256'), undefined);
});

test('BSD tags in a PGP clear-signed message: Fedora CHECKSUM', () => {
  const want = 'Fedora-Cloud-Base-Generic-43-1.6.x86_64.qcow2';
  assert.equal(findDigest(fedoraChecksum, want, 'sha256'), d256(want));
  assert.equal(
    findDigest(fedoraChecksum, 'Fedora-Cloud-Base-UKI-43-1.6.x86_64.qcow2', 'sha256'),
    d256('Fedora-Cloud-Base-UKI-43-1.6.x86_64.qcow2'),
  );
  assert.equal(findDigest(fedoraChecksum, 'Fedora-Cloud-Base-Generic-43-1.6.x86_64', 'sha256'), undefined);
  assert.equal(findDigest(fedoraChecksum, want, 'sha512'), undefined);
});

test('BSD tags: Rocky and AlmaLinux CHECKSUM, a SHA512 tag is not a SHA256 digest', () => {
  const rocky = [
    'Rocky-9-EC2-Base-9.8-20260525.0.x86_64.qcow2',
    'Rocky-9-GenericCloud-Base-9.8-20260525.0.x86_64.qcow2',
    'Rocky-9-GenericCloud-Base.latest.x86_64.qcow2',
    'Rocky-9-GenericCloud-LVM.latest.x86_64.qcow2',
  ]
    .map((name) => `# ${name}: 645988352 bytes\nSHA256 (${name}) = ${d256(name)}\n`)
    .join('');
  const want = 'Rocky-9-GenericCloud-Base.latest.x86_64.qcow2';
  assert.equal(findDigest(rocky, want, 'sha256'), d256(want));

  const alma = `# AlmaLinux-9-GenericCloud-latest.x86_64.qcow2: 12 bytes
SHA256 (AlmaLinux-9-GenericCloud-latest.x86_64.qcow2) = ${d256('alma').toUpperCase()}
# AlmaLinux-9-GenericCloud-UEFI-latest.x86_64.qcow2: 12 bytes
SHA256 (AlmaLinux-9-GenericCloud-UEFI-latest.x86_64.qcow2) = ${d256('alma-uefi')}
`;
  assert.equal(findDigest(alma, 'AlmaLinux-9-GenericCloud-latest.x86_64.qcow2', 'sha256'), d256('alma'));

  const tagged = `SHA512 (x.qcow2) = ${d512('x')}\nSHA3-256 (x.qcow2) = ${d256('x3')}\n`;
  assert.equal(findDigest(tagged, 'x.qcow2', 'sha512'), d512('x'));
  assert.equal(findDigest(tagged, 'x.qcow2', 'sha256'), undefined);
});

test('per-file files: Alpine .sha512, Arch .SHA256, a bare digest, a dated name', () => {
  const alpineFile = 'nocloud_alpine-3.23.4-x86_64-bios-cloudinit-r0.qcow2';
  const alpine = `${d512(alpineFile)}  ${alpineFile}\n`;
  assert.equal(findDigest(alpine, alpineFile, 'sha512'), d512(alpineFile));
  assert.equal(findDigest(alpine, alpineFile, 'sha256'), undefined);

  const arch = `${d256('arch')}  Arch-Linux-x86_64-cloudimg.qcow2\n`;
  assert.equal(findDigest(arch, 'Arch-Linux-x86_64-cloudimg.qcow2', 'sha256'), d256('arch'));

  assert.equal(findDigest(`${d256('bare')}\n`, 'anything.qcow2', 'sha256'), d256('bare'));
  assert.equal(findDigest(d512('bare').toUpperCase(), 'anything.qcow2', 'sha512'), d512('bare'));
  assert.equal(findDigest(`${d256('bare')}\n`, 'anything.qcow2', 'sha512'), undefined);

  // CentOS Stream's `-latest` sidecar names the dated file the link points at.
  const centos = `# CentOS-Stream-GenericCloud-9-20260526.0.x86_64.qcow2: 1234567890 bytes
SHA256 (CentOS-Stream-GenericCloud-9-20260526.0.x86_64.qcow2) = ${d256('centos')}
`;
  assert.equal(
    findDigest(centos, 'CentOS-Stream-GenericCloud-9-latest.x86_64.qcow2', 'sha256'),
    d256('centos'),
  );
});

test('no guessing: several digests and no name, one name with two digests, nothing at all', () => {
  assert.equal(findDigest(ubuntuSums, 'jammy-server-cloudimg-amd64.img', 'sha256'), undefined);
  const twice = `${d256('a')}  x.qcow2\n${d256('b')}  x.qcow2\n`;
  assert.equal(findDigest(twice, 'x.qcow2', 'sha256'), undefined);
  const same = `${d256('a')}  x.qcow2\n${d256('a')} *x.qcow2\n`;
  assert.equal(findDigest(same, 'x.qcow2', 'sha256'), d256('a'));
  assert.equal(findDigest('', 'x.qcow2', 'sha256'), undefined);
  assert.equal(findDigest('<html><body>404 Not Found</body></html>\n', 'x.qcow2', 'sha256'), undefined);
  // A digest one character short or long is no digest of the algorithm.
  assert.equal(findDigest(`${d256('a').slice(1)}  x.qcow2\n`, 'x.qcow2', 'sha256'), undefined);
  assert.equal(findDigest(`${d256('a')}0  x.qcow2\n`, 'x.qcow2', 'sha256'), undefined);
  // The one digest in a file is of another algorithm's tag.
  assert.equal(findDigest(`SHA3-256 (y.qcow2) = ${d256('y')}\n`, 'x.qcow2', 'sha256'), undefined);
  // Named, but only with a digest of the wrong length: no fallback to the one other digest.
  const wrong = `${d256('a')}  other.qcow2\n${d512('x')}  x.qcow2\n`;
  assert.equal(findDigest(wrong, 'x.qcow2', 'sha256'), undefined);
});

test('CRLF and CR line endings, escaped GNU names, sha256 -r lines', () => {
  const crlf = debianSums.replace(/\n/g, '\r\n');
  assert.equal(
    findDigest(crlf, 'debian-12-generic-amd64.qcow2', 'sha512'),
    d512('debian-12-generic-amd64.qcow2'),
  );
  assert.equal(
    findDigest(
      fedoraChecksum.replace(/\n/g, '\r\n'),
      'Fedora-Cloud-Base-Generic-43-1.6.x86_64.qcow2',
      'sha256',
    ),
    d256('Fedora-Cloud-Base-Generic-43-1.6.x86_64.qcow2'),
  );
  assert.equal(findDigest(`${d256('a')}\r`, 'x', 'sha256'), d256('a'));
  assert.equal(findDigest(`\\${d256('a')}  odd\\\\name.qcow2\n`, 'odd\\name.qcow2', 'sha256'), d256('a'));
  assert.equal(findDigest(`${d256('a')} x.qcow2\n${d256('b')} y.qcow2\n`, 'y.qcow2', 'sha256'), d256('b'));
});

test('the cap on a checksum file is 1 MiB', () => {
  assert.equal(maxChecksumBytes, 1024 * 1024);
});
