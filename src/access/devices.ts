import { readFile, readdir, readlink } from 'node:fs/promises';
import { basename, join } from 'node:path';

// holos devices: the host's PCI devices by IOMMU group, as passthrough (`devices:`) needs to
// know them. Read from sysfs under a root that tests point elsewhere (a copy of a real host's
// layout); names from the pci.ids database where the host has one.

export interface PciDevice {
  address: string;
  vendor: string;
  device: string;
  /** Six hex digits: class, subclass, programming interface. */
  class: string;
  driver?: string;
  iommuGroup?: string;
  /** The device exposes an option ROM (`rom` in sysfs). */
  rom: boolean;
}

const hex = (text: string) => text.trim().replace(/^0x/, '').toLowerCase();
const readHex = (path: string) => readFile(path, 'utf8').then(hex, () => '');
const linkName = (path: string) => readlink(path).then(basename, () => undefined);

/** Every PCI device under `<root>/bus/pci/devices`, sorted by address. */
export async function readPciDevices(root = '/sys'): Promise<PciDevice[]> {
  const dir = join(root, 'bus', 'pci', 'devices');
  const addresses = (await readdir(dir).catch(() => [])).sort();
  return Promise.all(
    addresses.map(async (address): Promise<PciDevice> => {
      const at = join(dir, address);
      const [vendor, device, cls, driver, iommuGroup, entries] = await Promise.all([
        readHex(join(at, 'vendor')),
        readHex(join(at, 'device')),
        readHex(join(at, 'class')),
        linkName(join(at, 'driver')),
        linkName(join(at, 'iommu_group')),
        readdir(at).catch(() => [] as string[]),
      ]);
      return {
        address,
        vendor,
        device,
        class: cls.padStart(6, '0'),
        ...(driver !== undefined && { driver }),
        ...(iommuGroup !== undefined && { iommuGroup }),
        rom: entries.includes('rom'),
      };
    }),
  );
}

/** Names from pci.ids: vendors, their devices, classes and subclasses. */
export interface PciNames {
  vendors: Map<string, string>;
  devices: Map<string, string>;
  classes: Map<string, string>;
}

/** Parses pci.ids (`vvvv  name`, `\tdddd  name`, `C cc  name`, `\tss  name`). Pure. */
export function parsePciIds(text: string): PciNames {
  const names: PciNames = { vendors: new Map(), devices: new Map(), classes: new Map() };
  let vendor: string | undefined;
  let cls: string | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    let m: RegExpExecArray | null;
    if ((m = /^C ([0-9a-f]{2})\s+(.*)$/.exec(line))) {
      cls = m[1]!;
      vendor = undefined;
      names.classes.set(cls, m[2]!);
    } else if ((m = /^([0-9a-f]{4})\s+(.*)$/.exec(line))) {
      vendor = m[1]!;
      cls = undefined;
      names.vendors.set(vendor, m[2]!);
    } else if ((m = /^\t([0-9a-f]{4})\s+(.*)$/.exec(line)) && vendor) {
      names.devices.set(`${vendor}:${m[1]!}`, m[2]!);
    } else if ((m = /^\t([0-9a-f]{2})\s+(.*)$/.exec(line)) && cls) {
      names.classes.set(`${cls}${m[1]!}`, m[2]!);
    }
  }
  return names;
}

/** Where distributions keep pci.ids (Debian's pci.ids package, hwdata, pciutils). */
export const pciIdsPaths = ['/usr/share/misc/pci.ids', '/usr/share/hwdata/pci.ids', '/usr/share/pci.ids'];

export async function readPciNames(paths = pciIdsPaths): Promise<PciNames | undefined> {
  for (const path of paths) {
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text !== undefined) return parsePciIds(text);
  }
  return undefined;
}

const isDisplay = (d: PciDevice) => d.class.startsWith('03');

/** `0000:01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA102 [10de:2204]`. */
export function describe(d: PciDevice, names?: PciNames): string {
  const className =
    names?.classes.get(d.class.slice(0, 4)) ?? names?.classes.get(d.class.slice(0, 2)) ?? 'class';
  const vendor = names?.vendors.get(d.vendor);
  const device = names?.devices.get(`${d.vendor}:${d.device}`);
  const what = [vendor, device].filter(Boolean).join(' ') || 'unknown device';
  return `${d.address} ${className} [${d.class.slice(0, 4)}]: ${what} [${d.vendor}:${d.device}]${d.driver ? ` (driver ${d.driver})` : ' (no driver)'}`;
}

export const noIommu =
  'no IOMMU groups: passthrough needs the IOMMU on (VT-d or AMD-Vi in the firmware, and intel_iommu=on or amd_iommu=on on the kernel command line)';

/** The report: devices by IOMMU group; with `gpu`, the display devices and what passing one needs. Pure. */
export function formatDevices(
  devices: readonly PciDevice[],
  names: PciNames | undefined,
  gpu: boolean,
): string {
  const lines: string[] = [];
  const grouped = devices.some((d) => d.iommuGroup !== undefined);
  if (!grouped) lines.push(noIommu);
  if (!names) lines.push('no pci.ids here (Debian: apt install pci.ids): devices show by number only');
  const groupOf = (d: PciDevice) => d.iommuGroup ?? '-';
  if (gpu) {
    const gpus = devices.filter(isDisplay);
    if (gpus.length === 0) lines.push('no display devices');
    for (const d of gpus) {
      lines.push(describe(d, names));
      const group = devices.filter((o) => o.iommuGroup !== undefined && o.iommuGroup === d.iommuGroup);
      const others = group.filter((o) => o.address !== d.address);
      lines.push(
        `  iommu group ${groupOf(d)}${others.length > 0 ? `, shared with ${others.map((o) => o.address).join(', ')}: pass them all (devices: one entry each)` : grouped ? ', alone' : ''}`,
      );
      const unbound = group.filter((o) => o.driver !== 'vfio-pci');
      lines.push(
        unbound.length === 0
          ? '  bound to vfio-pci: ready'
          : `  not bound to vfio-pci: ${unbound.map((o) => `${o.address} (${o.driver ?? 'no driver'})`).join(', ')}; bind them (driverctl set-override <address> vfio-pci)`,
      );
      lines.push(
        d.rom
          ? "  it exposes its ROM; a rom_file is needed only if the card is the host's boot GPU"
          : '  no ROM exposed: give a rom_file (a dump of its vBIOS) if the guest shows nothing',
      );
    }
    return lines.join('\n');
  }
  const groups = new Map<string, PciDevice[]>();
  for (const d of devices) groups.set(groupOf(d), [...(groups.get(groupOf(d)) ?? []), d]);
  const order = [...groups.keys()].sort((a, b) => (a === '-' ? 1 : b === '-' ? -1 : Number(a) - Number(b)));
  for (const group of order) {
    if (grouped) lines.push(group === '-' ? 'no group:' : `iommu group ${group}:`);
    for (const d of groups.get(group)!) lines.push(`${grouped ? '  ' : ''}${describe(d, names)}`);
  }
  return lines.join('\n');
}
