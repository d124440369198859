/** The cloud images holos knows by name. Pulling them is the images module's job; this is the list. */
export interface CatalogEntry {
  name: string;
  tag: string;
  isDefault: boolean;
  user: string;
  os: 'systemd' | 'openrc';
  format: 'qcow2';
}

const entry = (name: string, tag: string, user: string, isDefault = false): CatalogEntry => ({
  name,
  tag,
  isDefault,
  user,
  os: name === 'alpine' ? 'openrc' : 'systemd',
  format: 'qcow2',
});

export const catalog: readonly CatalogEntry[] = [
  entry('alpine', '3.21', 'alpine', true),
  entry('arch', 'latest', 'arch', true),
  entry('debian', '12', 'debian', true),
  entry('debian', 'bookworm', 'debian'),
  entry('ubuntu', 'noble', 'ubuntu', true),
  entry('ubuntu', '24.04', 'ubuntu'),
  entry('ubuntu', 'jammy', 'ubuntu'),
  entry('ubuntu', '22.04', 'ubuntu'),
  entry('fedora', '43', 'fedora', true),
];

/** A local file is named by a path; anything else (`alpine`, `ubuntu:noble`) is a catalog reference. */
export function isLocalImage(ref: string): boolean {
  return /^(\/|\.\.?\/|~\/)/.test(ref) || (!ref.includes(':') && /\.(qcow2|raw|img)$/.test(ref));
}

/** The catalog entry for `name[:tag]`, or an error text naming what to do. */
export function findCatalogImage(ref: string): CatalogEntry | string {
  const colon = ref.lastIndexOf(':');
  const [name, tag] = colon === -1 ? [ref, undefined] : [ref.slice(0, colon), ref.slice(colon + 1)];
  const named = catalog.filter((e) => e.name === name);
  if (named.length === 0)
    return `unknown image "${name}"; use a local file (./disk.qcow2) or one of: ${[...new Set(catalog.map((e) => e.name))].join(', ')} (holos images lists them)`;
  const found = named.find((e) => (tag === undefined ? e.isDefault : e.tag === tag));
  return (
    found ?? `unknown tag "${tag}" for image "${name}"; available: ${named.map((e) => e.tag).join(', ')}`
  );
}
