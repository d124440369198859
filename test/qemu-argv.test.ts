import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveProject, type ResolvedService } from '../src/compose/resolve.js';
import { qemuArgs, type LaunchFacts } from '../src/qemu/argv.js';
import { classOfField, classOfPath, instanceSpec, type InstanceSpec } from '../src/resources/instance.js';
import { loadText } from './support/compose.js';

const wd = '/state/instances/demo/web-1';
/** The base image does not reach QEMU's command line (the overlay names it): any path will do. */
const baseOf = (service: ResolvedService) => ({
  path: service.image.path ?? '/state/images/base.qcow2',
  format: service.image.format,
});

const facts: LaunchFacts = {
  accel: { kind: 'kvm', hostCpu: 'host' },
  files: {
    overlay: `${wd}/root.qcow2`,
    seed: `${wd}/seed-0123abcd.iso`,
    serialSocket: `${wd}/serial.sock`,
    serialLog: `${wd}/console.log`,
    qmpSocket: `${wd}/qmp.sock`,
    eventSocket: `${wd}/events.sock`,
    segmentSocket: (network) => `${wd}/${network === 'default' ? 'segment' : `segment-${network}`}.sock`,
    pidFile: `${wd}/qemu.pid`,
    uefiVars: `${wd}/OVMF_VARS.fd`,
  },
  sshPort: 40022,
  hostPorts: [8081, 41000],
  volumeFiles: { data: `${wd}/vol-data.qcow2` },
  uefiCode: '/usr/share/OVMF/OVMF_CODE_4M.fd',
};

const demo = `
name: demo
services:
  db:
    image: ./base.qcow2
  web:
    image: ./base.qcow2
    replicas: 2
    depends_on: [db]
    ports: ["8080:80", "53/udp"]
    volumes: ["./www:/srv/www:ro", "data:/var/lib/data:ro"]
volumes:
  data: { size: 1G }
`;

function argsFor(text: string, instance: string, override: Partial<LaunchFacts> = {}) {
  const project = resolveProject(loadText(text));
  const found = project.instances.find((i) => i.name === instance)!;
  const service = project.services.find((s) => s.name === found.service)!;
  const spec = instanceSpec(project, service, found, baseOf(service));
  return { args: qemuArgs(spec, { ...facts, ...override }), project, instance: found };
}

test('the full command line of web-1 in the demo project', () => {
  const { args, project, instance } = argsFor(demo, 'web-1');
  const www = `${project.dir}/www`;
  assert.deepEqual(args, [
    '-name', 'web-1',
    '-machine', 'q35,accel=kvm',
    '-cpu', 'host',
    '-smp', '1',
    '-m', '512',
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-chardev', `socket,id=serial0,path=${wd}/serial.sock,server=on,wait=off,logfile=${wd}/console.log,logappend=on`,
    '-serial', 'chardev:serial0',
    '-chardev', `socket,id=qmp,path=${wd}/qmp.sock,server=on,wait=off`,
    '-mon', 'chardev=qmp,mode=control',
    '-chardev', `socket,id=events,path=${wd}/events.sock,server=on,wait=off`,
    '-mon', 'chardev=events,mode=control',
    '-device', 'virtio-rng-pci',
    '-drive', `id=root,if=none,format=qcow2,file=${wd}/root.qcow2,cache=writeback,discard=unmap`,
    '-device', 'virtio-blk-pci,drive=root,bootindex=1',
    '-drive', `id=seed,if=none,format=raw,readonly=on,file=${wd}/seed-0123abcd.iso`,
    '-device', 'virtio-blk-pci,drive=seed',
    '-drive', `id=vol-data,if=none,format=qcow2,file=${wd}/vol-data.qcow2,cache=writeback,discard=unmap,readonly=on`,
    '-device', 'virtio-blk-pci,drive=vol-data,serial=vol-data',
    '-netdev', 'user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22,hostfwd=tcp:127.0.0.1:8081-:80,hostfwd=udp:127.0.0.1:41000-:53',
    '-device', `virtio-net-pci,netdev=net0,mac=${instance.userMac}`,
    '-netdev', `stream,id=net1,server=on,addr.type=unix,addr.path=${wd}/segment.sock`,
    '-device', `virtio-net-pci,netdev=net1,mac=${instance.nics[0]!.mac}`,
    '-virtfs', `local,path=${www},mount_tag=holos0,security_model=none,readonly=on`,
    '-daemonize', '-pidfile', `${wd}/qemu.pid`,
  ]); // prettier-ignore
});

test('TCG runs cpu_model host as the accelerator says; an explicit model stays', () => {
  const tcg = { accel: { kind: 'tcg', hostCpu: 'max' } } as const;
  const { args } = argsFor(demo, 'db-0', tcg);
  assert.deepEqual(args.slice(2, 6), ['-machine', 'q35,accel=tcg', '-cpu', 'max']);
  const custom = argsFor(
    demo.replace(
      '  db:\n    image: ./base.qcow2\n',
      '  db:\n    image: ./base.qcow2\n    vm: { cpu_model: "Skylake-Server,-hle", vcpu: 4, memory_mb: 2048, machine: pc }\n',
    ),
    'db-0',
    tcg,
  );
  assert.deepEqual(custom.args.slice(2, 10), [
    '-machine',
    'pc,accel=tcg',
    '-cpu',
    'Skylake-Server,,-hle',
    '-smp',
    '4',
    '-m',
    '2048',
  ]);
});

test('commas in paths are doubled', () => {
  const { args } = argsFor(demo, 'db-0', { files: { ...facts.files, overlay: '/a,b/root.qcow2' } });
  assert.ok(
    args.includes('id=root,if=none,format=qcow2,file=/a,,b/root.qcow2,cache=writeback,discard=unmap'),
  );
});

test('UEFI and PCI passthrough: firmware pair, kernel-irqchip, vfio-pci with romfile (relative to the file)', () => {
  // Any file beside the compose file stands for the ROM: it must exist, and QEMU gets its full path.
  const text =
    'services:\n  gpu:\n    image: ./base.qcow2\n    devices:\n      - pci: "01:00.0"\n        rom_file: ./base.qcow2\n      - pci: "0000:01:00.1"\n';
  const { args, project } = argsFor(text, 'gpu-0');
  assert.equal(args[args.indexOf('-machine') + 1], 'q35,accel=kvm,kernel-irqchip=on');
  const drives = args.filter((_, i) => args[i - 1] === '-drive');
  assert.deepEqual(drives.slice(0, 2), [
    'if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd',
    `if=pflash,format=raw,file=${wd}/OVMF_VARS.fd`,
  ]);
  const devices = args.filter((_, i) => args[i - 1] === '-device');
  assert.deepEqual(
    devices.filter((d) => d.startsWith('vfio')),
    [`vfio-pci,host=0000:01:00.0,romfile=${project.dir}/base.qcow2`, 'vfio-pci,host=0000:01:00.1'],
  );
});

test('read-only named volumes, bind mounts read-write, extra_args last and verbatim', () => {
  const text = `
services:
  app:
    image: ./base.qcow2
    volumes: ["cache:/cache:ro", "./src:/src"]
    vm: { extra_args: ["-device", "virtio-gpu-pci", "-display", "egl-headless"] }
volumes:
  cache: {}
`;
  const { args, project } = argsFor(text, 'app-0', { volumeFiles: { cache: '/v/cache.qcow2' } });
  assert.ok(
    args.includes(
      'id=vol-cache,if=none,format=qcow2,file=/v/cache.qcow2,cache=writeback,discard=unmap,readonly=on',
    ),
  );
  assert.ok(args.includes(`local,path=${project.dir}/src,mount_tag=holos1,security_model=none`));
  assert.deepEqual(args.slice(-4), ['-device', 'virtio-gpu-pci', '-display', 'egl-headless']);
});

// The instance's spec is the single source of its command line: every field qemuArgs reads
// is a field the planner diffs with a class that restarts or recreates the VM, so no edit that
// changes what QEMU is given can be recorded without one. (The compiler gives every spec field
// a class: classOfField is a Record over InstanceSpec's keys.)

/** The spec paths `read` makes (`vm.memory_mb`, `mounts.<key>.source`), recorded as it reads them. */
function readPaths<T extends object>(value: T, read: (paths: Set<string>, proxy: T) => void): Set<string> {
  const paths = new Set<string>();
  const wrap = <V>(v: V, path: string[]): V =>
    v !== null && typeof v === 'object'
      ? new Proxy(v, {
          get(target, key, receiver) {
            const child = Reflect.get(target, key, receiver) as unknown;
            if (typeof key !== 'string' || Array.isArray(target)) return wrap(child, path);
            const at = [...path, key];
            paths.add(at.join('.'));
            return wrap(child, at);
          },
        })
      : v;
  read(paths, wrap(value, []));
  return paths;
}

test('every spec field the QEMU command line reads has a class that restarts or recreates the VM', () => {
  const project = resolveProject(
    loadText(
      demo.replace(
        'volumes:\n  data',
        '  gpu:\n    image: ./base.qcow2\n    devices: [{ pci: "01:00.0", rom_file: ./base.qcow2 }]\n    vm: { extra_args: [-S] }\nvolumes:\n  data',
      ),
    ),
  );
  for (const name of ['web-1', 'gpu-0']) {
    const found = project.instances.find((i) => i.name === name)!;
    const spec = instanceSpec(
      project,
      project.services.find((s) => s.name === found.service)!,
      found,
      baseOf(project.services.find((s) => s.name === found.service)!),
    );
    const paths = readPaths(spec, (_, proxy) => qemuArgs(proxy, facts));
    assert.ok(paths.has('vm.memory_mb') && paths.has('networks.default'), [...paths].join(' '));
    for (const path of paths)
      assert.ok(
        ['restart', 'recreate'].includes(classOfPath(path)),
        `${name}: ${path} is ${classOfPath(path)}`,
      );
    // And the other way: a record-only field never changes the command line.
    const args = qemuArgs(spec, facts);
    for (const field of Object.keys(classOfField) as (keyof InstanceSpec)[]) {
      if (classOfField[field] !== 'record') continue;
      const changed = {
        ...spec,
        [field]: field === 'stop_grace_period' ? 1 : field === 'depends_on' ? ['x'] : { test: ['true'] },
      };
      assert.deepEqual(qemuArgs(changed, facts), args, `${name}: ${field}`);
    }
  }
});
