import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { formatDevices, noIommu, parsePciIds, readPciDevices } from '../src/access/devices.js';
import { runCli } from './support/cli.js';

// holos devices against a sysfs laid out as a real workstation's is (a GPU and its audio
// function in one IOMMU group, bound to vfio-pci; a NIC on its driver; symlinks as the kernel
// makes them), and against this machine's own /sys.

const ids = `# pci.ids excerpt
10de  NVIDIA Corporation
\t2204  GA102 [GeForce RTX 3090]
\t1aef  GA102 High Definition Audio Controller
8086  Intel Corporation
\t15b8  Ethernet Connection (2) I219-V
C 02  Network controller
\t00  Ethernet controller
C 03  Display controller
\t00  VGA compatible controller
C 04  Multimedia controller
\t03  Audio device
`;

/** A sysfs tree: bus/pci/devices/<addr> links into devices/pci0000:00/…, as on a host. */
function sysfs(
  devices: {
    address: string;
    vendor: string;
    device: string;
    cls: string;
    driver?: string;
    group?: string;
    rom?: boolean;
  }[],
) {
  const root = mkdtempSync(join(tmpdir(), 'holos-sysfs-'));
  const link = (target: string, path: string) => {
    mkdirSync(dirname(path), { recursive: true });
    symlinkSync(target, path);
  };
  for (const d of devices) {
    const real = join(root, 'devices', 'pci0000:00', '0000:00:01.0', d.address);
    mkdirSync(real, { recursive: true });
    writeFileSync(join(real, 'vendor'), `0x${d.vendor}\n`);
    writeFileSync(join(real, 'device'), `0x${d.device}\n`);
    writeFileSync(join(real, 'class'), `0x${d.cls}\n`);
    if (d.rom) writeFileSync(join(real, 'rom'), '');
    link(
      `../../../devices/pci0000:00/0000:00:01.0/${d.address}`,
      join(root, 'bus', 'pci', 'devices', d.address),
    );
    if (d.driver) {
      mkdirSync(join(root, 'bus', 'pci', 'drivers', d.driver), { recursive: true });
      link(`../../../../bus/pci/drivers/${d.driver}`, join(real, 'driver'));
    }
    if (d.group) {
      mkdirSync(join(root, 'kernel', 'iommu_groups', d.group, 'devices'), { recursive: true });
      link(`../../../../kernel/iommu_groups/${d.group}`, join(real, 'iommu_group'));
    }
  }
  return root;
}

test('a workstation: groups, names, drivers; --gpu says what passing the GPU needs', async (t) => {
  const root = sysfs([
    { address: '0000:00:1f.6', vendor: '8086', device: '15b8', cls: '020000', driver: 'e1000e', group: '3' },
    {
      address: '0000:01:00.0',
      vendor: '10de',
      device: '2204',
      cls: '030000',
      driver: 'vfio-pci',
      group: '14',
      rom: true,
    },
    {
      address: '0000:01:00.1',
      vendor: '10de',
      device: '1aef',
      cls: '040300',
      driver: 'snd_hda_intel',
      group: '14',
    },
  ]);
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const devices = await readPciDevices(root);
  assert.deepEqual(devices[1], {
    address: '0000:01:00.0',
    vendor: '10de',
    device: '2204',
    class: '030000',
    driver: 'vfio-pci',
    iommuGroup: '14',
    rom: true,
  });
  const names = parsePciIds(ids);
  assert.equal(
    formatDevices(devices, names, false),
    [
      'iommu group 3:',
      '  0000:00:1f.6 Ethernet controller [0200]: Intel Corporation Ethernet Connection (2) I219-V [8086:15b8] (driver e1000e)',
      'iommu group 14:',
      '  0000:01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA102 [GeForce RTX 3090] [10de:2204] (driver vfio-pci)',
      '  0000:01:00.1 Audio device [0403]: NVIDIA Corporation GA102 High Definition Audio Controller [10de:1aef] (driver snd_hda_intel)',
    ].join('\n'),
  );
  assert.equal(
    formatDevices(devices, names, true),
    [
      '0000:01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA102 [GeForce RTX 3090] [10de:2204] (driver vfio-pci)',
      '  iommu group 14, shared with 0000:01:00.1: pass them all (devices: one entry each)',
      '  not bound to vfio-pci: 0000:01:00.1 (snd_hda_intel); bind them (driverctl set-override <address> vfio-pci)',
      "  it exposes its ROM; a rom_file is needed only if the card is the host's boot GPU",
    ].join('\n'),
  );
  const cli = await runCli(['devices', '--gpu'], { env: { HOLOS_SYSFS: root } });
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /^0000:01:00\.0 .*\[10de:2204\]/m);
});

test('no IOMMU: one line saying how to turn it on, then the devices', () => {
  const out = formatDevices(
    [
      {
        address: '0000:00:02.0',
        vendor: '1af4',
        device: '1042',
        class: '018000',
        driver: 'virtio-pci',
        rom: false,
      },
    ],
    undefined,
    false,
  );
  assert.equal(
    out,
    `${noIommu}\nno pci.ids here (Debian: apt install pci.ids): devices show by number only\n0000:00:02.0 class [0180]: unknown device [1af4:1042] (driver virtio-pci)`,
  );
});

test("holos devices on this machine's /sys: every device, or the no-IOMMU line first", async () => {
  const count = readdirSync('/sys/bus/pci/devices').length;
  const json = await runCli(['devices', '--json']);
  assert.equal(json.code, 0, json.stderr);
  assert.equal((JSON.parse(json.stdout) as { devices: unknown[] }).devices.length, count);
  const text = await runCli(['devices']);
  assert.equal(text.code, 0, text.stderr);
  const lines = text.stdout.trim().split('\n');
  assert.equal(lines.filter((l) => /^\s*[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7] /.test(l)).length, count);
  const groups = existsSync('/sys/kernel/iommu_groups') ? readdirSync('/sys/kernel/iommu_groups') : [];
  if (groups.length === 0) assert.equal(lines[0], noIommu);
});
