import type { InstanceSpec } from '../resources/instance.js';

// The QEMU command line of one instance: pure, from its spec (the same spec the applied record
// keeps and the planner diffs, so nothing QEMU is given can change unseen) and the runtime
// facts apply decided (accelerator, files, host ports). Golden tests pin it per feature.

export interface Accelerator {
  kind: 'kvm' | 'tcg';
  /** The -cpu value for `cpu_model: host`, which TCG cannot provide (`max` there). */
  hostCpu: string;
}

/** The files of one instance, all inside its directory under the state dir. */
export interface InstanceFiles {
  overlay: string;
  seed: string;
  serialSocket: string;
  serialLog: string;
  qmpSocket: string;
  /** A second QMP monitor, held open by `holos watch` for events, so `qmpSocket` stays free for queries. */
  eventSocket: string;
  /** A switch network's NIC socket: QEMU listens, that network's switch connects (net/switch.ts). */
  segmentSocket: (network: string) => string;
  pidFile: string;
  /** UEFI only: this instance's copy of the OVMF variable store. */
  uefiVars: string;
}

export interface LaunchFacts {
  accel: Accelerator;
  files: InstanceFiles;
  /** The host port forwarded to the guest's sshd. */
  sshPort: number;
  /** Host port of each `spec.ports` entry, in order, with ephemeral ones chosen. */
  hostPorts: readonly number[];
  /** Named volume → its qcow2 file. */
  volumeFiles: Readonly<Record<string, string>>;
  /** UEFI only: the read-only OVMF code. */
  uefiCode?: string;
}

/** QEMU option values are comma-separated lists, so a comma inside a value is doubled. */
export const escapeOption = (value: string | number) => String(value).replace(/,/g, ',,');

const option = (...parts: (string | false | undefined)[]) => parts.filter(Boolean).join(',');

function machineArgs(spec: InstanceSpec, accel: Accelerator): string[] {
  const { vm } = spec;
  const irqchip = Object.keys(spec.devices).length > 0 && 'kernel-irqchip=on';
  const cpu = vm.cpu_model === 'host' ? accel.hostCpu : vm.cpu_model;
  return [
    '-machine',
    option(escapeOption(vm.machine), `accel=${accel.kind}`, irqchip),
    '-cpu',
    escapeOption(cpu),
    '-smp',
    String(vm.vcpu),
    '-m',
    String(vm.memory_mb),
  ];
}

function consoleArgs(files: InstanceFiles): string[] {
  return [
    '-chardev',
    option(
      'socket',
      'id=serial0',
      `path=${escapeOption(files.serialSocket)}`,
      'server=on',
      'wait=off',
      `logfile=${escapeOption(files.serialLog)}`,
      'logappend=on',
    ),
    '-serial',
    'chardev:serial0',
    '-chardev',
    option('socket', 'id=qmp', `path=${escapeOption(files.qmpSocket)}`, 'server=on', 'wait=off'),
    '-mon',
    'chardev=qmp,mode=control',
    '-chardev',
    option('socket', 'id=events', `path=${escapeOption(files.eventSocket)}`, 'server=on', 'wait=off'),
    '-mon',
    'chardev=events,mode=control',
  ];
}

function diskArgs(spec: InstanceSpec, facts: LaunchFacts): string[] {
  const { files } = facts;
  const firmware = spec.vm.uefi
    ? [
        '-drive',
        option('if=pflash', 'format=raw', 'readonly=on', `file=${escapeOption(facts.uefiCode ?? '')}`),
        '-drive',
        option('if=pflash', 'format=raw', `file=${escapeOption(files.uefiVars)}`),
      ]
    : [];
  const volumes = Object.values(spec.mounts).flatMap((mount) => {
    if (mount.type !== 'volume') return [];
    const id = `vol-${mount.source}`;
    return [
      '-drive',
      option(
        `id=${id}`,
        'if=none',
        'format=qcow2',
        `file=${escapeOption(facts.volumeFiles[mount.source] ?? '')}`,
        'cache=writeback',
        'discard=unmap',
        mount.readOnly && 'readonly=on',
      ),
      '-device',
      option('virtio-blk-pci', `drive=${id}`, `serial=${mount.device}`),
    ];
  });
  return [
    ...firmware,
    '-drive',
    option(
      'id=root',
      'if=none',
      'format=qcow2',
      `file=${escapeOption(files.overlay)}`,
      'cache=writeback',
      'discard=unmap',
    ),
    '-device',
    'virtio-blk-pci,drive=root,bootindex=1',
    '-drive',
    option('id=seed', 'if=none', 'format=raw', 'readonly=on', `file=${escapeOption(files.seed)}`),
    '-device',
    'virtio-blk-pci,drive=seed',
    ...volumes,
  ];
}

function networkArgs(spec: InstanceSpec, facts: LaunchFacts): string[] {
  const forwards = [
    `hostfwd=tcp:127.0.0.1:${facts.sshPort}-:22`,
    ...Object.values(spec.ports).map(
      (p, i) => `hostfwd=${p.protocol}:${p.hostIp}:${facts.hostPorts[i] ?? p.host}-:${p.guest}`,
    ),
  ];
  const nics = Object.entries(spec.networks).flatMap(([network, nic], i) => [
    '-netdev',
    nic.driver === 'bridge'
      ? // QEMU's setuid helper plugs a tap into the bridge, as /etc/qemu/bridge.conf allows.
        option('bridge', `id=net${i + 1}`, `br=${escapeOption(nic.bridge ?? '')}`)
      : // A unix socket in the owner's 0700 directory: no other user and no LAN ever sees a frame.
        option(
          'stream',
          `id=net${i + 1}`,
          'server=on',
          'addr.type=unix',
          `addr.path=${escapeOption(facts.files.segmentSocket(network))}`,
        ),
    '-device',
    `virtio-net-pci,netdev=net${i + 1},mac=${nic.mac}`,
  ]);
  return [
    '-netdev',
    option('user', 'id=net0', ...forwards),
    '-device',
    `virtio-net-pci,netdev=net0,mac=${spec.uplink_mac}`,
    ...nics,
  ];
}

function passthroughArgs(spec: InstanceSpec): string[] {
  const shares = Object.values(spec.mounts).flatMap((mount) =>
    mount.type === 'bind'
      ? [
          '-virtfs',
          option(
            'local',
            `path=${escapeOption(mount.source)}`,
            `mount_tag=${mount.device}`,
            'security_model=none',
            mount.readOnly && 'readonly=on',
          ),
        ]
      : [],
  );
  const devices = Object.values(spec.devices).flatMap((d) => [
    '-device',
    option('vfio-pci', `host=${d.pci}`, d.rom_file && `romfile=${escapeOption(d.rom_file)}`),
  ]);
  return [...shares, ...devices];
}

/** The arguments after the binary name. `-daemonize` makes start-up errors come back at once. */
export function qemuArgs(spec: InstanceSpec, facts: LaunchFacts): string[] {
  return [
    '-name',
    escapeOption(spec.name),
    ...machineArgs(spec, facts.accel),
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    ...consoleArgs(facts.files),
    '-device',
    'virtio-rng-pci',
    ...diskArgs(spec, facts),
    ...networkArgs(spec, facts),
    ...passthroughArgs(spec),
    '-daemonize',
    '-pidfile',
    facts.files.pidFile,
    ...spec.vm.extra_args,
  ];
}
