/**
 * The cloud images holos knows by name, as data. Pulling them is the images module's job
 * (source.ts, the lock file); this is the list.
 *
 * Each entry is one image file (one cache entry); its tags are aliases of it, and tags[0] is the
 * canonical one (`debian:bookworm` is `debian:12`). URLs are the distributions' own x86_64 qcow2
 * cloud images. Where a distribution publishes a stable `latest`/`current` name the entry uses it:
 * the digest is pinned by the lock file, not by the URL, and a guessed dated name that 404s is
 * worse than a moving one that always answers. Where no such name exists (Alpine, Fedora) the
 * URL names the exact point release, and moving it is an edit here.
 */

export type Algo = 'sha256' | 'sha512';

export interface CatalogImage {
  /** `debian` */
  name: string;
  /** `['12', 'bookworm']`: aliases of one image (one cache file); tags[0] is canonical. */
  tags: readonly string[];
  /** What the bare name means (`debian` is `debian:12`); exactly one per name. */
  isDefault: boolean;
  /** The official cloud image: x86_64, qcow2. */
  url: string;
  /** Where its digest is published. */
  checksum: { url: string; algo: Algo };
  /** The login user the image's cloud-init conventionally creates. */
  user: string;
  os: 'systemd' | 'openrc';
  format: 'qcow2' | 'raw';
  /** The smallest memory it boots with sensibly, in MiB. */
  minMemoryMb: number;
}

export interface CatalogMatch {
  image: CatalogImage;
  /** The tag as asked, or the canonical one for a bare name. */
  tag: string;
  /** `${name}-${tags[0]}`: the cache's name for it. */
  key: string;
  /** `${name}:${tags[0]}` */
  canonical: string;
}

const debian = (version: string, codename: string, isDefault: boolean): CatalogImage => {
  // The "generic" variant on purpose: "nocloud" has no openssh-server. `latest/` is a stable
  // directory whose SHA512SUMS (GNU format) lists every file in it.
  const dir = `https://cloud.debian.org/images/cloud/${codename}/latest`;
  return {
    name: 'debian',
    tags: [version, codename],
    isDefault,
    url: `${dir}/debian-${version}-generic-amd64.qcow2`,
    checksum: { url: `${dir}/SHA512SUMS`, algo: 'sha512' },
    user: 'debian',
    os: 'systemd',
    format: 'qcow2',
    minMemoryMb: 512,
  };
};

const ubuntu = (codename: string, version: string, isDefault: boolean): CatalogImage => {
  // `<codename>/current/` always holds the newest build; its SHA256SUMS is GNU format with `*`
  // (binary) markers. The `.img` is a qcow2 file despite its name.
  const dir = `https://cloud-images.ubuntu.com/${codename}/current`;
  return {
    name: 'ubuntu',
    tags: [codename, version],
    isDefault,
    url: `${dir}/${codename}-server-cloudimg-amd64.img`,
    checksum: { url: `${dir}/SHA256SUMS`, algo: 'sha256' },
    user: 'ubuntu',
    os: 'systemd',
    format: 'qcow2',
    minMemoryMb: 1024,
  };
};

const alpine = (branch: string, release: string, isDefault: boolean): CatalogImage => {
  // Alpine has no `latest` name for cloud images: the file names the point release, and
  // `<file>.sha512` beside it holds its digest. The `nocloud_…-bios-cloudinit` variant: real
  // cloud-init (the `tiny` ones run tiny-cloud, which reads only part of a user-data) and BIOS
  // boot, holos's default firmware.
  const file = `nocloud_alpine-${release}-x86_64-bios-cloudinit-r0.qcow2`;
  const url = `https://dl-cdn.alpinelinux.org/alpine/v${branch}/releases/cloud/${file}`;
  return {
    name: 'alpine',
    tags: [branch],
    isDefault,
    url,
    checksum: { url: `${url}.sha512`, algo: 'sha512' },
    user: 'alpine',
    os: 'openrc',
    format: 'qcow2',
    minMemoryMb: 256,
  };
};

const fedora = (version: string, compose: string, isDefault: boolean): CatalogImage => {
  // No `latest` name: the file names the release's compose (`43-1.6`). The CHECKSUM file beside
  // it is BSD format inside a PGP clear-signed message, and covers all of the release's cloud images.
  const dir = `https://download.fedoraproject.org/pub/fedora/linux/releases/${version}/Cloud/x86_64/images`;
  return {
    name: 'fedora',
    tags: [version],
    isDefault,
    url: `${dir}/Fedora-Cloud-Base-Generic-${version}-${compose}.x86_64.qcow2`,
    checksum: { url: `${dir}/Fedora-Cloud-${version}-${compose}-x86_64-CHECKSUM`, algo: 'sha256' },
    user: 'fedora',
    os: 'systemd',
    format: 'qcow2',
    minMemoryMb: 1024,
  };
};

const almalinux = (version: string, isDefault: boolean): CatalogImage => {
  // `…-latest` is a stable name; the directory's CHECKSUM (BSD format) lists it by that name too.
  const dir = `https://repo.almalinux.org/almalinux/${version}/cloud/x86_64/images`;
  return {
    name: 'almalinux',
    tags: [version],
    isDefault,
    url: `${dir}/AlmaLinux-${version}-GenericCloud-latest.x86_64.qcow2`,
    checksum: { url: `${dir}/CHECKSUM`, algo: 'sha256' },
    user: 'almalinux',
    os: 'systemd',
    format: 'qcow2',
    minMemoryMb: 1024,
  };
};

const rocky = (version: string, isDefault: boolean): CatalogImage => {
  // `….latest…` is a stable name; `<file>.CHECKSUM` beside it is BSD format and names it.
  const url = `https://dl.rockylinux.org/pub/rocky/${version}/images/x86_64/Rocky-${version}-GenericCloud-Base.latest.x86_64.qcow2`;
  return {
    name: 'rocky',
    tags: [version],
    isDefault,
    url,
    checksum: { url: `${url}.CHECKSUM`, algo: 'sha256' },
    user: 'rocky',
    os: 'systemd',
    format: 'qcow2',
    minMemoryMb: 1024,
  };
};

const centosStream = (version: string, isDefault: boolean): CatalogImage => {
  // `…-latest` is a stable name; `<file>.SHA256SUM` beside it is BSD format.
  const url = `https://cloud.centos.org/centos/${version}-stream/x86_64/images/CentOS-Stream-GenericCloud-${version}-latest.x86_64.qcow2`;
  return {
    name: 'centos-stream',
    tags: [version],
    isDefault,
    url,
    checksum: { url: `${url}.SHA256SUM`, algo: 'sha256' },
    user: 'cloud-user',
    os: 'systemd',
    format: 'qcow2',
    minMemoryMb: 1024,
  };
};

// The EL 10 family (AlmaLinux, Rocky, CentOS Stream 10) needs an x86-64-v3 CPU (AVX2); 9 runs on
// any x86_64, so 9 is what their bare names mean.
export const catalog: readonly CatalogImage[] = [
  alpine('3.23', '3.23.4', true),
  alpine('3.21', '3.21.7', false),
  {
    // A rolling release: `latest/` is the newest build; `<file>.SHA256` beside it is one GNU line.
    name: 'arch',
    tags: ['latest'],
    isDefault: true,
    url: 'https://geo.mirror.pkgbuild.com/images/latest/Arch-Linux-x86_64-cloudimg.qcow2',
    checksum: {
      url: 'https://geo.mirror.pkgbuild.com/images/latest/Arch-Linux-x86_64-cloudimg.qcow2.SHA256',
      algo: 'sha256',
    },
    user: 'arch',
    os: 'systemd',
    format: 'qcow2',
    minMemoryMb: 512,
  },
  debian('12', 'bookworm', true),
  debian('13', 'trixie', false),
  ubuntu('noble', '24.04', true),
  ubuntu('jammy', '22.04', false),
  ubuntu('resolute', '26.04', false),
  fedora('43', '1.6', true),
  fedora('44', '1.7', false),
  almalinux('9', true),
  almalinux('10', false),
  rocky('9', true),
  rocky('10', false),
  centosStream('9', true),
  centosStream('10', false),
];

/** The catalog's image names, in catalog order. */
export function catalogNames(): string[] {
  return [...new Set(catalog.map((e) => e.name))];
}

/** `image: https://…` names a disk image to download as is. */
export function isUrlImage(ref: string): boolean {
  return /^https?:\/\//i.test(ref);
}

/** A local file is named by a path; a URL is not one, and anything else (`alpine`, `ubuntu:noble`) is a catalog reference. */
export function isLocalImage(ref: string): boolean {
  if (isUrlImage(ref)) return false;
  return /^(\/|\.\.?\/|~\/)/.test(ref) || (!ref.includes(':') && /\.(qcow2|raw|img)$/.test(ref));
}

const match = (image: CatalogImage, tag: string): CatalogMatch => ({
  image,
  tag,
  key: `${image.name}-${image.tags[0]}`,
  canonical: `${image.name}:${image.tags[0]}`,
});

/** The catalog image for `name[:tag]`, or a one-line error naming what to do. */
export function findCatalogImage(ref: string): CatalogMatch | string {
  const colon = ref.lastIndexOf(':');
  const [name, tag] = colon === -1 ? [ref, undefined] : [ref.slice(0, colon), ref.slice(colon + 1)];
  const named = catalog.filter((e) => e.name === name);
  if (named.length === 0)
    return `unknown image "${name}"; use a local file (./disk.qcow2), an https:// URL or one of: ${catalogNames().join(', ')} (holos images lists them)`;
  if (tag === undefined) {
    const image = named.find((e) => e.isDefault) ?? named[0]!;
    return match(image, image.tags[0]!);
  }
  const image = named.find((e) => e.tags.includes(tag));
  if (image) return match(image, tag);
  const available = named.flatMap((e) => e.tags).join(', ');
  return `unknown tag "${tag}" for image "${name}"; available: ${available} (holos images lists them)`;
}
