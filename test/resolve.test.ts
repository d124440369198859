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
    project.instances.map((i) => [i.name, i.ip]),
    [
      ['db-0', '10.10.0.2'],
      ['web-0', '10.10.0.3'],
      ['web-1', '10.10.0.4'],
    ],
  );
  assert.deepEqual(project.network.hosts, {
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
    a.instances.map((i) => i.mac),
    b.instances.map((i) => i.mac),
  );
  for (const i of a.instances) {
    assert.match(i.mac, /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.equal(i.userMac, i.mac.replace(/^52:54:00/, '52:54:01'));
  }
  assert.equal(new Set(a.instances.map((i) => i.mac)).size, a.instances.length);
});

test('adding or removing a service keeps the addresses of the others', () => {
  const before = resolveProject(loadText(demo));
  const withCache = demo.replace('services:\n', 'services:\n  cache:\n    image: ./base.qcow2\n');
  const after = resolveProject(loadText(withCache), before.allocation);
  for (const instance of before.instances) {
    const same = after.instances.find((i) => i.name === instance.name)!;
    assert.equal(same.ip, instance.ip, instance.name);
    assert.equal(same.mac, instance.mac, instance.name);
  }
  assert.equal(after.instances.find((i) => i.name === 'cache-0')!.ip, '10.10.0.5');

  const withoutDb = demo
    .replace(/ {2}db:\n {4}image: \.\/base\.qcow2\n {4}healthcheck: \{ test: pg_isready \}\n/, '')
    .replace('depends_on: [db]', '');
  const shrunk = resolveProject(loadText(withoutDb), before.allocation);
  assert.deepEqual(
    shrunk.instances.map((i) => [i.name, i.ip]),
    [
      ['web-0', '10.10.0.3'],
      ['web-1', '10.10.0.4'],
    ],
  );
  // A freed address is handed out again to the next new instance.
  const reused = resolveProject(loadText(withoutDb.replace('replicas: 2', 'replicas: 3')), shrunk.allocation);
  assert.equal(reused.instances.find((i) => i.name === 'web-2')!.ip, '10.10.0.2');
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
