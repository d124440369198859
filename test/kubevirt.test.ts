import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Ajv, type ValidateFunction } from 'ajv';
import { parseAllDocuments } from 'yaml';
import { toYaml } from '../src/cli/kubevirt.js';
import { validateComposeFile } from '../src/compose/load.js';
import { resolveProject, type ResolvedProject } from '../src/compose/resolve.js';
import { exportKubevirt, quantity, type ExportKeys, type Manifest } from '../src/export/kubevirt.js';
import { initialShape, stackYaml } from './e2e/stack-compose.js';
import { runCli } from './support/cli.js';
import { loadText } from './support/compose.js';

// holos export kubevirt: every document of every valid fixture and example validates against
// KubeVirt's, CDI's and Kubernetes' own schemas (their strict form: no unknown field); the
// warnings name what has no equivalent; the e2e stack's export is a reviewed golden file.

const schemaDir = join(import.meta.dirname, 'support', 'kubevirt');
const ajv = new Ajv({ allErrors: true });
const byKind = new Map<string, ValidateFunction>();
for (const file of ['virtualmachine', 'datavolume', 'k8s-core']) {
  const schema = JSON.parse(readFileSync(join(schemaDir, `${file}.strict.schema.json`), 'utf8')) as {
    properties: { kind: { enum: string[] } };
  };
  const validate = ajv.compile(schema);
  for (const kind of schema.properties.kind.enum) byKind.set(kind, validate);
}

function assertValid(doc: Manifest, where: string): void {
  const validate = byKind.get(doc.kind);
  assert.ok(validate, `${where}: no schema for kind ${doc.kind}`);
  const valid: boolean = validate(JSON.parse(JSON.stringify(doc)));
  if (!valid) {
    const errors = (validate.errors ?? []).filter((e) => e.keyword !== 'if');
    assert.fail(
      `${where}: ${doc.kind}/${(doc.metadata as { name: string }).name}: ${ajv.errorsText(errors)}`,
    );
  }
}

const fakeKeys = (project: ResolvedProject): ExportKeys => ({
  projectPublicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIProjectKey holos project',
  hostKeys: Object.fromEntries(
    project.instances.map((i) => [
      i.name,
      {
        privateKey: `-----BEGIN OPENSSH PRIVATE KEY-----\n${i.name}\n-----END OPENSSH PRIVATE KEY-----\n`,
        publicKey: `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHost${i.name.replace(/-/g, '')} holos host key`,
      },
    ]),
  ),
});
const options = { serviceType: 'ClusterIP' as const };

/** Each document of the export, with and without keys, round-tripped through its YAML. */
function checkProject(project: ResolvedProject, where: string): void {
  for (const keys of [{ hostKeys: {} }, fakeKeys(project)]) {
    const { documents } = exportKubevirt(project, keys, {
      ...options,
      namespace: 'shop',
      storageClass: 'fast',
    });
    assert.ok(documents.length > 0, `${where}: nothing exported`);
    for (const doc of parseAllDocuments(toYaml(documents))) assertValid(doc.toJS() as Manifest, where);
  }
}

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'compose', 'valid');
test('every document exported from every valid fixture validates (strict)', () => {
  for (const name of readdirSync(fixtures).filter((f) => /\.ya?ml$/.test(f))) {
    const result = validateComposeFile(join(fixtures, name));
    assert.ok(result.ok, name);
    checkProject(resolveProject(result.loaded), name);
  }
});

test('every document exported from every example validates (strict)', () => {
  const examples = join(import.meta.dirname, '..', 'examples');
  for (const name of readdirSync(examples, { withFileTypes: true }).filter((d) => d.isDirectory())) {
    // A copy, with the disk scripts/demo.sh links in for examples/demo.
    const dir = mkdtempSync(join(tmpdir(), 'holos-kubevirt-'));
    try {
      cpSync(join(examples, name.name), dir, { recursive: true });
      writeFileSync(join(dir, 'disk.qcow2'), '');
      const result = validateComposeFile(join(dir, 'holos.yaml'));
      assert.ok(result.ok, `${name.name}: ${result.ok ? '' : result.problems.join('\n')}`);
      checkProject(resolveProject(result.loaded), `example ${name.name}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('the private host key is in the Secret, never in the VirtualMachine; the same input gives the same bytes', () => {
  const project = resolveProject(loadText(stackYaml('./base.qcow2', initialShape)));
  const keys = fakeKeys(project);
  const first = toYaml(exportKubevirt(project, keys, options).documents);
  assert.equal(toYaml(exportKubevirt(project, keys, options).documents), first);
  const docs = exportKubevirt(project, keys, options).documents;
  const secret = docs.find(
    (d) => d.kind === 'Secret' && (d.metadata as { name: string }).name === 'db-0-cloudinit',
  )!;
  const userData = (secret.stringData as { userdata: string }).userdata;
  assert.match(userData, /ed25519_private: \|\n\s+-----BEGIN OPENSSH PRIVATE KEY-----\n\s+db-0\n/);
  assert.match(userData, /ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIProjectKey holos project/);
  for (const vm of docs.filter((d) => d.kind === 'VirtualMachine'))
    assert.doesNotMatch(JSON.stringify(vm), /PRIVATE KEY/);
});

test("what has no cluster equivalent is one warning each; the cluster's DNS replaces the hosts table", () => {
  const text = `name: odd
networks:
  back: {}
services:
  db:
    image: ./base.qcow2
    networks: [back]
    healthcheck: { test: ["CMD", "pg_isready"], interval: 10s, retries: 5, start_period: 1m }
    volumes: ["data:/var/lib/data:ro", "./conf:/etc/app:ro"]
    devices: [{ pci: "01:00.0", rom_file: ./vbios.rom }]
  web:
    image: debian:12
    replicas: 2
    restart: always
    depends_on: { db: { condition: service_healthy } }
    ports: ["192.168.1.5:8080:80", "9000:9000/udp"]
    extra_hosts: ["host.docker.internal:host-gateway", "db.example:10.0.0.5"]
    labels: ["com.example.team=web", "not a name=x"]
    vm: { vcpu: 2, memory_mb: 1024, disk_size: 4G, uefi: true, extra_args: [-no-hpet], machine: pc }
    networks: [back]
  share:
    image: ./base.qcow2
    volumes: ["data:/data:ro"]
volumes:
  data: { size: 2G }
`;
  const dir = join(mkdtempSync(join(tmpdir(), 'holos-kubevirt-')), 'odd');
  mkdirSync(join(dir, 'conf'), { recursive: true });
  writeFileSync(join(dir, 'base.qcow2'), '');
  writeFileSync(join(dir, 'vbios.rom'), '');
  writeFileSync(join(dir, 'holos.yaml'), text);
  const result = validateComposeFile(join(dir, 'holos.yaml'));
  assert.ok(result.ok, result.ok ? '' : result.problems.join('\n'));
  const project = resolveProject(result.loaded);
  const { documents, warnings } = exportKubevirt(project, { hostKeys: {} }, options);
  const expected = [
    /^project odd: it has no keys on this host yet/,
    /^network back: every VM is on the pod network.*NetworkPolicy/,
    /^volume data: db-0, share-0 share it; ReadWriteOnce storage/,
    /^service db: image \.\/base\.qcow2 is a local file: its root DataVolumes wait for an upload \(virtctl image-upload/,
    /^service db: no vm\.disk_size; each root DataVolume asks for 10Gi$/,
    /^service db: device 0000:01:00\.0 becomes hostDevices entry holos\.dev\/pci-0000-01-00-0; .*, and its rom_file \.\/vbios\.rom has no field there$/,
    /^service db: bind mount \.\/conf → \/etc\/app has no cluster equivalent/,
    /^service db: its healthcheck becomes a readinessProbe, which runs through the guest agent/,
    /^service share: image \.\/base\.qcow2 is a local file/,
    /^service share: no vm\.disk_size/,
    /^service web: vm\.extra_args are QEMU arguments/,
    /^service web: vm\.machine pc: KubeVirt picks the machine type/,
    /^service web: label not a name is not a Kubernetes annotation name; left out$/,
    /^service web: depends_on db: Kubernetes has no start order; the first boot waits until db is ready/,
    /^service web: a port's host address has no meaning in a cluster/,
    /^service web: one Service load-balances its 2 replicas/,
    /^service web: extra_hosts host\.docker\.internal: host-gateway has no cluster equivalent/,
  ];
  assert.equal(warnings.length, expected.length, warnings.join('\n'));
  expected.forEach((pattern, i) => assert.match(warnings[i]!, pattern));
  for (const doc of documents) assertValid(doc, 'odd');

  const vm = documents.find(
    (d) => d.kind === 'VirtualMachine' && (d.metadata as { name: string }).name === 'web-1',
  )!;
  const spec = vm.spec as {
    runStrategy: string;
    dataVolumeTemplates: { spec: { storage: { resources: { requests: { storage: string } } } } }[];
    template: { spec: { domain: Record<string, unknown>; subdomain: string; hostname: string } };
  };
  assert.equal(spec.runStrategy, 'Always');
  assert.deepEqual((vm.metadata as { annotations?: unknown }).annotations, { 'com.example.team': 'web' });
  assert.equal(spec.dataVolumeTemplates[0]!.spec.storage.resources.requests.storage, '4Gi');
  assert.deepEqual(spec.template.spec.domain.firmware, { bootloader: { efi: { secureBoot: false } } });
  assert.equal(spec.template.spec.subdomain, 'web');
  const webSecret = documents.find((d) => (d.metadata as { name: string }).name === 'web-0-cloudinit')!;
  const userData = (webSecret.stringData as { userdata: string }).userdata;
  assert.match(userData, /until getent hosts db >\/dev\/null; do sleep 2; done/, 'waits for db to be ready');
  assert.match(userData, /'10\.0\.0\.5 db\.example'/, 'the extra host stays');
  assert.doesNotMatch(userData, /db-0|10\.10\./, 'no peer of the host table, no private-segment address');
  const dbSecret = documents.find((d) => (d.metadata as { name: string }).name === 'db-0-cloudinit')!;
  assert.match((dbSecret.stringData as { userdata: string }).userdata, /- qemu-guest-agent/);
  const ports = documents.find((d) => (d.metadata as { name: string }).name === 'web-ports')!;
  assert.deepEqual((ports.spec as { ports: unknown[] }).ports, [
    { name: 'tcp-8080', protocol: 'TCP', port: 8080, targetPort: 80 },
    { name: 'udp-9000', protocol: 'UDP', port: 9000, targetPort: 9000 },
  ]);
  assert.deepEqual(
    documents
      .filter((d) => d.kind === 'Service' && (d.spec as { clusterIP?: string }).clusterIP === 'None')
      .map((d) => (d.metadata as { name: string }).name),
    ['db-0', 'db', 'share-0', 'share', 'web-0', 'web-1', 'web'],
  );
  assert.equal(quantity(1536 * 2 ** 20), '1536Mi');
});

test('the e2e stack exports as its reviewed golden file (test/golden/kubevirt-stack.yaml)', () => {
  const project = resolveProject(loadText(stackYaml('./base.qcow2', initialShape), 'stack'));
  const golden = join(import.meta.dirname, 'golden', 'kubevirt-stack.yaml');
  const { documents, notes } = exportKubevirt(project, { hostKeys: {} }, { ...options, namespace: 'stack' });
  const actual = toYaml(documents, notes);
  if (process.env.HOLOS_UPDATE_GOLDEN === '1') writeFileSync(golden, actual);
  assert.equal(actual, readFileSync(golden, 'utf8'), 'HOLOS_UPDATE_GOLDEN=1 rewrites it; review the diff');
});

test('holos export kubevirt: stdout by default, -o DIR one file each (0600), bad flags one line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'holos-kubevirt-cli-'));
  const state = join(dir, 'state');
  writeFileSync(
    join(dir, 'holos.yaml'),
    'name: tiny\nservices:\n  app:\n    image: debian:12\n    ports: ["8080:80"]\n  debug:\n    image: debian:12\n    profiles: [debug]\n',
  );
  const env = { HOLOS_STATE_DIR: state };
  const out = await runCli(['export', 'kubevirt', '--service-type', 'nodeport'], { cwd: dir, env });
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /^---\napiVersion: v1\nkind: Secret\n/);
  assert.match(out.stdout, /type: NodePort/);
  assert.match(out.stderr, /^holos: project tiny: it has no keys on this host yet/m);
  assert.doesNotMatch(out.stdout, /debug-0/, 'a service of a profile not enabled is not exported');
  const profiled = await runCli(['--profile', 'debug', 'export', 'kubevirt'], { cwd: dir, env });
  assert.match(profiled.stdout, /name: debug-0\n/);
  const written = await runCli(['export', 'kubevirt', '-o', join(dir, 'k8s')], { cwd: dir, env });
  assert.equal(written.code, 0, written.stderr);
  assert.deepEqual(readdirSync(join(dir, 'k8s')).sort(), [
    'secret-app-0-cloudinit.yaml',
    'service-app-0.yaml',
    'service-app-ports.yaml',
    'service-app.yaml',
    'virtualmachine-app-0.yaml',
  ]);
  for (const [flags, message] of [
    [
      ['--service-type', 'Ingress'],
      /^holos: --service-type Ingress: use ClusterIP, NodePort, LoadBalancer$/m,
    ],
    [['--namespace', 'Shop_1'], /^holos: --namespace Shop_1: a Kubernetes name is lowercase letters/m],
  ] as const) {
    const bad = await runCli(['export', 'kubevirt', ...flags], { cwd: dir, env });
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(bad.stderr, message);
    assert.doesNotMatch(bad.stderr, /\n\s+at /, 'no stack trace');
  }
  rmSync(dir, { recursive: true, force: true });
});
