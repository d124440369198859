import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveProject } from '../src/compose/resolve.js';
import { loadText } from './support/compose.js';

const demo = `
name: demo
services:
  db:
    image: ./base.qcow2
    healthcheck: { test: pg_isready }
  web:
    image: ./base.qcow2
    replicas: 2
    depends_on: [db]
    ports: ["8080:80", "9000/udp"]
    volumes: ["./www:/srv/www:ro", "data:/var/lib/data:ro"]
volumes:
  data: { size: 1G }
`;

test('instances, IPs in start order from .2, hosts, replica ports', () => {
  const project = resolveProject(loadText(demo));
  assert.deepEqual(project.levels, [['db'], ['web']]);
  assert.deepEqual(
    project.instances.map((i) => [i.name, i.nics[0]!.ip]),
    [
      ['db-0', '10.10.0.2'],
      ['web-0', '10.10.0.3'],
      ['web-1', '10.10.0.4'],
    ],
  );
  assert.deepEqual(project.networks[0]!.hosts, {
    'db-0': '10.10.0.2',
    db: '10.10.0.2',
    'web-0': '10.10.0.3',
    web: '10.10.0.3',
    'web-1': '10.10.0.4',
  });
  const web1 = project.instances.find((i) => i.name === 'web-1')!;
  assert.deepEqual(
    web1.ports.map((p) => [p.host, p.guest, p.protocol]),
    [
      [8081, 80, 'tcp'],
      [0, 9000, 'udp'],
    ],
  );
  assert.equal(project.services[1]!.mounts[0]!.source, `${project.dir}/www`);
  assert.deepEqual(project.volumes, { data: { size: 2 ** 30 } });
});

test('MACs are deterministic, locally administered, distinct, and the user NIC differs in byte 3', () => {
  const a = resolveProject(loadText(demo));
  const b = resolveProject(loadText(demo));
  assert.deepEqual(
    a.instances.map((i) => i.nics[0]!.mac),
    b.instances.map((i) => i.nics[0]!.mac),
  );
  for (const i of a.instances) {
    assert.match(i.nics[0]!.mac, /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.equal(i.userMac, i.nics[0]!.mac.replace(/^52:54:00/, '52:54:01'));
  }
  assert.equal(new Set(a.instances.map((i) => i.nics[0]!.mac)).size, a.instances.length);
});

test('adding or removing a service keeps the addresses of the others', () => {
  const before = resolveProject(loadText(demo));
  const withCache = demo.replace('services:\n', 'services:\n  cache:\n    image: ./base.qcow2\n');
  const after = resolveProject(loadText(withCache), before.allocation);
  for (const instance of before.instances) {
    const same = after.instances.find((i) => i.name === instance.name)!;
    assert.equal(same.nics[0]!.ip, instance.nics[0]!.ip, instance.name);
    assert.equal(same.nics[0]!.mac, instance.nics[0]!.mac, instance.name);
  }
  assert.equal(after.instances.find((i) => i.name === 'cache-0')!.nics[0]!.ip, '10.10.0.5');

  const withoutDb = demo
    .replace(/ {2}db:\n {4}image: \.\/base\.qcow2\n {4}healthcheck: \{ test: pg_isready \}\n/, '')
    .replace('depends_on: [db]', '');
  const shrunk = resolveProject(loadText(withoutDb), before.allocation);
  assert.deepEqual(
    shrunk.instances.map((i) => [i.name, i.nics[0]!.ip]),
    [
      ['web-0', '10.10.0.3'],
      ['web-1', '10.10.0.4'],
    ],
  );
  // A freed address is handed out again to the next new instance.
  const reused = resolveProject(loadText(withoutDb.replace('replicas: 2', 'replicas: 3')), shrunk.allocation);
  assert.equal(reused.instances.find((i) => i.name === 'web-2')!.nics[0]!.ip, '10.10.0.2');
});

test('defaults: login user, image format, UEFI with devices, project name from the directory', () => {
  const loaded = loadText(
    `
services:
  gpu:
    image: ubuntu:noble
    devices: [{ pci: "01:00.0" }]
  raw:
    image: ./base.raw
    image_format: raw
  plain:
    image: ./base.qcow2
    cloud_init: { user: ops }
`.replace('./base.raw', './base.qcow2'),
    'My Project_1',
  );
  assert.equal(loaded.project, 'my-project-1');
  const project = resolveProject(loaded);
  const byName = Object.fromEntries(project.services.map((s) => [s.name, s]));
  assert.equal(byName.gpu!.user, 'ubuntu');
  assert.equal(byName.gpu!.uefi, true);
  assert.equal(byName.gpu!.spec.devices[0]!.pci, '0000:01:00.0');
  assert.equal(byName.raw!.image.format, 'raw');
  assert.equal(byName.plain!.user, 'ops');
  assert.equal(byName.plain!.uefi, false);
  assert.equal(byName.plain!.spec.vm.memory_mb, 512);
  assert.equal(byName.plain!.spec.stop_grace_period, 30_000);
});

const twoNetworks = `
name: tiers
services:
  db:
    image: ./base.qcow2
    networks:
      back: { ipv4_address: 10.20.0.10, aliases: [postgres] }
  api:
    image: ./base.qcow2
    depends_on: [db]
    networks: [front, back]
  web:
    image: ./base.qcow2
    replicas: 2
    depends_on: [api]
    networks: [front]
networks:
  front: {}
  back:
    ipam: { config: [{ subnet: 10.20.0.0/24 }] }
`;

test('named networks: a NIC on each, a subnet each, names only where services meet', () => {
  const project = resolveProject(loadText(twoNetworks));
  assert.deepEqual(
    project.networks.map((n) => [n.name, n.subnet]),
    [
      ['front', '10.10.0.0/24'],
      ['back', '10.20.0.0/24'],
    ],
  );
  const byName = new Map(project.instances.map((i) => [i.name, i]));
  const nics = (name: string) => byName.get(name)!.nics.map((n) => `${n.network} ${n.ip}/${n.prefix}`);
  assert.deepEqual(nics('db-0'), ['back 10.20.0.10/24']);
  assert.deepEqual(nics('api-0'), ['front 10.10.0.2/24', 'back 10.20.0.2/24']);
  assert.deepEqual(nics('web-1'), ['front 10.10.0.4/24']);
  // web and db share no network: neither knows the other's name.
  assert.deepEqual(byName.get('web-0')!.hosts, {
    'api-0': '10.10.0.2',
    api: '10.10.0.2',
    'web-0': '10.10.0.3',
    web: '10.10.0.3',
    'web-1': '10.10.0.4',
  });
  assert.deepEqual(byName.get('db-0')!.hosts, {
    'db-0': '10.20.0.10',
    db: '10.20.0.10',
    postgres: '10.20.0.10',
    'api-0': '10.20.0.2',
    api: '10.20.0.2',
  });
  // api is on both: each name with its address on api's first network that has it.
  assert.equal(byName.get('api-0')!.hosts.web, '10.10.0.3');
  assert.equal(byName.get('api-0')!.hosts.db, '10.20.0.10');
  // Replicas on the same networks share one table (one digest, one rendering).
  assert.equal(byName.get('web-0')!.hosts, byName.get('web-1')!.hosts);
  const macs = project.instances.flatMap((i) => i.nics.map((n) => n.mac));
  assert.equal(new Set(macs).size, macs.length);
});

test('named networks keep their subnets and addresses when networks and services come and go', () => {
  const before = resolveProject(loadText(twoNetworks));
  // A network declared before front takes the next free subnet; front keeps 10.10.0.0/24.
  const withAdmin = twoNetworks
    .replace('networks:\n  front: {}', 'networks:\n  admin: {}\n  front: {}')
    .replace('networks: [front]\n', 'networks: [front, admin]\n');
  const after = resolveProject(loadText(withAdmin), before.allocation);
  assert.deepEqual(
    after.networks.map((n) => [n.name, n.subnet]),
    [
      ['admin', '10.10.1.0/24'],
      ['front', '10.10.0.0/24'],
      ['back', '10.20.0.0/24'],
    ],
  );
  for (const old of before.instances) {
    const now = after.instances.find((i) => i.name === old.name)!;
    for (const nic of old.nics)
      assert.deepEqual(
        now.nics.find((n) => n.network === nic.network),
        nic,
      );
    assert.equal(now.userMac, old.userMac);
  }
  // A static address is its service's even when the allocation gave it to another before.
  const claimed = twoNetworks.replace(
    'networks: [front, back]',
    'networks: { front: , back: { ipv4_address: 10.20.0.3 } }',
  );
  const moved = resolveProject(loadText(claimed), before.allocation);
  assert.equal(moved.instances.find((i) => i.name === 'api-0')!.nics[1]!.ip, '10.20.0.3');
});

test('an allocation recorded before named networks is the default network one, unchanged', () => {
  const legacy = {
    instances: {
      'db-0': { ip: '10.10.0.7', mac: '52:54:00:aa:bb:cc' },
      'web-0': { ip: '10.10.0.3', mac: '52:54:00:aa:bb:cd' },
    },
  };
  const project = resolveProject(loadText(demo), legacy);
  const db = project.instances.find((i) => i.name === 'db-0')!;
  assert.deepEqual(db.nics, [{ network: 'default', ip: '10.10.0.7', prefix: 24, mac: '52:54:00:aa:bb:cc' }]);
  assert.equal(db.userMac, '52:54:01:aa:bb:cc');
  assert.equal(project.instances.find((i) => i.name === 'web-1')!.nics[0]!.ip, '10.10.0.2');
  assert.equal(project.allocation.networks.default!.subnet, '10.10.0.0/24');
});
