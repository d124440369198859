import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { seedHash } from '../src/cloudinit/iso.js';
import { firstBootReport, fstabSync, mountCommand, renderSeed } from '../src/cloudinit/render.js';
import { resolveProject } from '../src/compose/resolve.js';
import { seedContentHash } from '../src/resources/seed.js';
import { shellQuote } from '../src/util/shell.js';
import { loadText } from './support/compose.js';

const keys = {
  projectPublicKey: 'ssh-ed25519 AAAAproject holos-demo',
  hostKey: {
    privateKey: '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n',
    publicKey: 'ssh-ed25519 AAAAhost',
  },
};

const demo = `
name: demo
services:
  db:
    image: ./base.qcow2
    cloud_init:
      user: pg
      packages: [postgresql]
      ssh_authorized_keys: ["ssh-ed25519 AAAAuser me@laptop"]
      write_files:
        - { path: /etc/app.conf, content: "ssh_pwauth: no\\nport: 22:22\\n", permissions: "0600" }
        - { path: /etc/flag, content: "on" }
      bootcmd: [echo early]
      runcmd: ["echo one", [echo, two]]
  web:
    image: debian:12
    replicas: 2
    volumes: ["./www:/srv/www:ro", "data:/var/lib/data:ro"]
volumes:
  data: {}
`;

function seedOf(text: string, instanceName: string) {
  const project = resolveProject(loadText(text));
  const instance = project.instances.find((i) => i.name === instanceName)!;
  const service = project.services.find((s) => s.name === instance.service)!;
  return renderSeed(project, service, instance, keys);
}

// cloud-init reads YAML 1.1; yaml's 1.1 parser reads what PyYAML would.
const read11 = (text: string) => parse(text, { version: '1.1' }) as Record<string, unknown>;

test('meta-data names the instance; network-config matches both NICs by MAC', () => {
  const project = resolveProject(loadText(demo));
  const web1 = project.instances.find((i) => i.name === 'web-1')!;
  const seed = seedOf(demo, 'web-1');
  assert.deepEqual(read11(seed['meta-data']), { 'instance-id': 'web-1', 'local-hostname': 'web-1' });
  assert.deepEqual(read11(seed['network-config']), {
    version: 2,
    ethernets: {
      uplink: { match: { macaddress: web1.userMac }, dhcp4: true },
      private: { match: { macaddress: web1.nics[0]!.mac }, dhcp4: false, addresses: ['10.10.0.4/24'] },
    },
  });
});

test('network-config: a NIC per network, static on a switch network, DHCP after the uplink on a bridge', () => {
  const text = `
name: nets
services:
  app:
    image: ./base.qcow2
    networks:
      back: { ipv4_address: 10.20.0.10 }
      lan:
  peer:
    image: ./base.qcow2
    networks: [back]
networks:
  back:
    ipam: { config: [{ subnet: 10.20.0.0/16 }] }
  lan:
    driver: bridge
    driver_opts: { holos.bridge.name: br0 }
`;
  const project = resolveProject(loadText(text));
  const app = project.instances.find((i) => i.name === 'app-0')!;
  const [back, lan] = app.nics;
  assert.deepEqual(read11(seedOf(text, 'app-0')['network-config']), {
    version: 2,
    ethernets: {
      uplink: { match: { macaddress: app.userMac }, dhcp4: true },
      'net-back': { match: { macaddress: back!.mac }, dhcp4: false, addresses: ['10.20.0.10/16'] },
      'net-lan': {
        match: { macaddress: lan!.mac },
        dhcp4: true,
        'dhcp4-overrides': { 'route-metric': 2048 },
      },
    },
  });
  // The bridge's address is the LAN's: no name of it in anyone's hosts table.
  assert.deepEqual(project.instances.find((i) => i.name === 'peer-0')!.hosts, {
    'app-0': '10.20.0.10',
    app: '10.20.0.10',
    'peer-0': '10.20.0.2',
    peer: '10.20.0.2',
  });
  assert.equal(lan!.ip, undefined);
});

test('user-data: user with sudo and both keys, pinned host key, no password, user content in order', () => {
  const seed = seedOf(demo, 'db-0');
  assert.ok(seed['user-data'].startsWith('#cloud-config\n'));
  const data = read11(seed['user-data']) as Record<string, never>;
  assert.equal(data.hostname, 'db-0');
  assert.equal(data.ssh_pwauth, false);
  assert.deepEqual(data.users, [
    {
      name: 'pg',
      groups: ['adm', 'sudo'],
      shell: '/bin/bash',
      sudo: 'ALL=(ALL) NOPASSWD:ALL',
      lock_passwd: true,
      ssh_authorized_keys: ['ssh-ed25519 AAAAuser me@laptop', keys.projectPublicKey],
    },
  ]);
  assert.deepEqual(data.ssh_keys, {
    ed25519_private: keys.hostKey.privateKey,
    ed25519_public: keys.hostKey.publicKey,
  });
  assert.equal(data.ssh_genkeytypes, undefined);
  assert.equal(data.package_update, true);
  assert.deepEqual(data.packages, ['postgresql']);
  const files = data.write_files as unknown as { path: string; content: string; permissions: string }[];
  assert.deepEqual(
    files.map((f) => f.path),
    ['/etc/app.conf', '/etc/flag'],
  );
  // Strings that YAML 1.1 would turn into booleans, numbers or octal stay strings.
  assert.equal(files[0]!.content, 'ssh_pwauth: no\nport: 22:22\n');
  assert.equal(files[0]!.permissions, '0600');
  assert.equal(files[1]!.content, 'on');
  // First, always: the hosts table, then holos's fstab lines made exactly this service's mounts (none here).
  const bootcmd = data.bootcmd as unknown as string[];
  assert.match(
    bootcmd[0]!,
    / > \/etc\/hosts\.holos && chmod 644 \/etc\/hosts\.holos && mv \/etc\/hosts\.holos \/etc\/hosts$/,
  );
  assert.deepEqual(bootcmd.slice(1), [fstabSync([]), 'echo early']);
  // First, always: the step that reports the end of the first boot (observe/boot.ts).
  assert.deepEqual(data.runcmd, [firstBootReport, 'echo one', ['echo', 'two']]);
  assert.deepEqual(
    Object.keys(data).filter((k) => ['packages', 'write_files', 'bootcmd', 'runcmd'].includes(k)),
    ['packages', 'write_files', 'bootcmd', 'runcmd'],
  );
});

test('/etc/hosts lists every instance, services by replica 0, IPs in numeric order', () => {
  // The bootcmd line, run by a real shell with the file put elsewhere, writes exactly the table.
  const line = (read11(seedOf(demo, 'web-0')['user-data']).bootcmd as string[])[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'holos-hosts-'));
  execFileSync('sh', ['-c', line.replaceAll('/etc/hosts', join(dir, 'hosts'))]);
  const hosts = readFileSync(join(dir, 'hosts'), 'utf8');
  assert.equal(statSync(join(dir, 'hosts')).mode & 0o777, 0o644);
  rmSync(dir, { recursive: true });
  assert.equal(
    hosts,
    '127.0.0.1 localhost\n127.0.1.1 web-0\n::1 localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n\n' +
      '10.10.0.2 db db-0\n10.10.0.3 web web-0\n10.10.0.4 web-1\n',
  );
});

test('catalog images default to their cloud user; mounts come first in bootcmd', () => {
  const data = read11(seedOf(demo, 'web-0')['user-data']) as { users: { name: string }[]; bootcmd: string[] };
  assert.equal(data.users[0]!.name, 'debian');
  assert.equal(data.bootcmd.length, 4);
  assert.match(data.bootcmd[0]!, /\/etc\/hosts/);
  assert.match(data.bootcmd[1]!, /9p trans=virtio.*\/dev\/disk\/by-id\/virtio-vol-data/);
  assert.match(data.bootcmd[2]!, /mount/);
  // The replicas share the volume read-only, so none of them formats it; a writer would.
  assert.match(data.bootcmd[3]!, /mount \/var\/lib\/data/);
  assert.doesNotMatch(data.bootcmd[3]!, /mkfs/);
  assert.match(
    mountCommand({ type: 'volume', source: 'data', target: '/data', readOnly: false, device: 'vol-data' }),
    /mkfs\.ext4 -q -F -L data \/dev\/disk\/by-id\/virtio-vol-data/,
  );
});

test('shell quoting survives quotes, spaces, $() and newlines in a real shell', () => {
  for (const text of [
    "it's",
    'a b',
    '$(touch /tmp/pwned)',
    '`id`',
    'line\nbreak',
    '"; rm -rf / #',
    '',
    '-n',
  ]) {
    const out = execFileSync('sh', ['-c', `printf '%s' ${shellQuote(text)}`], { encoding: 'utf8' });
    assert.equal(out, text);
  }
});

test('a mount command with a hostile target stays one target in a real shell', () => {
  const target = "/data/it's $(id) `x` \\d";
  const mount = { type: 'volume', source: 'data', target, readOnly: true, device: 'vol-data' } as const;
  // Run the commands with the tools replaced by printers: every argument must arrive intact.
  const script = `
    udevadm() { :; }; mkdir() { printf 'mkdir[%s]\\n' "$2"; }
    mountpoint() { return 1; }; mount() { printf 'mount[%s]\\n' "$1"; }; umount() { printf 'umount[%s]\\n' "$1"; }
    dir=$(mktemp -d) && cd "$dir" && : > ./fstab
    ${[fstabSync([mount]), mountCommand(mount)]
      .join('\n')
      .replace(/\/etc\/fstab/g, './fstab')
      .replace(/\/run\//g, './')}
    printf 'fstab[%s]\\n' "$(cat ./fstab)"; rm -r "$dir"`;
  const out = execFileSync('bash', ['-c', script], { encoding: 'utf8' });
  assert.equal(
    out,
    `mkdir[${target}]\nmount[${target}]\nfstab[/dev/disk/by-id/virtio-vol-data /data/it's\\040$(id)\\040\`x\`\\040\\134d ext4 ro,nofail,x-holos 0 2]\n`,
  );
});

test("fstabSync: holos's fstab lines become the mounts of this boot; gone or changed ones are unmounted", () => {
  const mount = (target: string, readOnly: boolean, device: string) =>
    ({ type: 'bind', source: '/host', target, readOnly, device }) as const;
  const user = 'UUID=1234 / ext4 errors=remount-ro 0 1';
  /** One boot's fstabSync on this fstab: the umount calls it made, then the fstab it left. */
  const boot = (fstab: string, mounts: readonly ReturnType<typeof mount>[]) => {
    const out = execFileSync(
      'bash',
      [
        '-c',
        `umount() { printf 'umount[%s]\\n' "$1"; }
         dir=$(mktemp -d) && cd "$dir" && printf '%s' "$FSTAB" > ./fstab
         ${fstabSync(mounts)
           .replace(/\/etc\/fstab/g, './fstab')
           .replace(/\/run\//g, './')}
         echo ---; cat ./fstab; rm -r "$dir"`,
      ],
      { encoding: 'utf8', env: { ...process.env, FSTAB: fstab } },
    );
    const [calls = '', after = ''] = out.split('---\n');
    return { unmounted: calls.split('\n').filter(Boolean), fstab: after };
  };
  const first = boot(`${user}\n`, [mount('/srv/a b', false, 'holos0'), mount('/srv/keep', false, 'holos1')]);
  assert.deepEqual(first.unmounted, []);
  assert.equal(first.fstab.split('\n')[0], user, "the user's own line is kept");
  // Next boot: "/srv/a b" became read-only on another tag, so its old line goes and is unmounted.
  const second = boot(first.fstab, [mount('/srv/keep', false, 'holos1'), mount('/srv/a b', true, 'holos2')]);
  assert.deepEqual(second.unmounted, ['umount[/srv/a b]']);
  assert.deepEqual(second.fstab.trimEnd().split('\n'), [
    user,
    'holos1 /srv/keep 9p trans=virtio,version=9p2000.L,msize=262144,defaults,nofail,x-holos 0 0',
    'holos2 /srv/a\\040b 9p trans=virtio,version=9p2000.L,msize=262144,ro,nofail,x-holos 0 0',
  ]);
  // No mounts left: every holos line goes (and is unmounted), the user's stays.
  const third = boot(second.fstab, []);
  assert.deepEqual(third.unmounted, ['umount[/srv/keep]', 'umount[/srv/a b]']);
  assert.equal(third.fstab, `${user}\n`);
});

/** `value`, recording the path of every property read from it, however deep. */
function recording<T extends object>(value: T, path: string, read: Set<string>): T {
  return new Proxy(value, {
    get(target, key, receiver) {
      const got: unknown = Reflect.get(target, key, receiver);
      if (typeof key !== 'string') return got;
      read.add(`${path}.${key}`);
      return got !== null && typeof got === 'object' ? recording(got, `${path}.${key}`, read) : got;
    },
  });
}

test('renderSeed reads only what seedContentHash hashes, which names the seed file without rendering', () => {
  const project = resolveProject(loadText(demo));
  const hashedEverywhere = [
    'instance.name',
    // Hashed whole, or as its one NIC's ip and mac when that is on the default /24 (seed.ts).
    'instance.nics',
    'instance.userMac',
    'instance.hosts',
    'service.user',
    'service.image.os',
    'service.spec.cloud_init',
    // The list of mounts itself: the hash maps all of it.
    'service.mounts.length',
    'service.mounts.map',
    'service.mounts.filter',
    'service.mounts.constructor',
    // Hashed when they say something (seed.ts: guestInputs): an empty environment, no main
    // service and a hostname that is the instance's name render nothing of their own.
    'instance.hostname',
    'service.environment',
    'service.main',
  ];
  for (const instance of project.instances) {
    const service = project.services.find((s) => s.name === instance.service)!;
    // Of a mount, what the guest sees: a bind mount's host path is QEMU's alone.
    const mountFields = service.mounts.flatMap((m, i) =>
      [
        ...['type', 'target', 'readOnly', 'device'],
        ...(m.type === 'volume' ? ['source'] : ['automount', 'options']),
      ].map((field) => `service.mounts.${i}.${field}`),
    );
    const hashed = [...hashedEverywhere, ...mountFields];
    const read = new Set<string>();
    renderSeed(
      recording(project, 'project', read),
      recording(service, 'service', read),
      recording(instance, 'instance', read),
      keys,
    );
    const unhashed = [...read].filter(
      (path) => !hashed.some((h) => path === h || path.startsWith(`${h}.`) || h.startsWith(`${path}.`)),
    );
    assert.deepEqual(unhashed, [], `${instance.name}: add these to seedContentHash`);
    assert.ok(read.has('service.spec.cloud_init.runcmd') && read.has('instance.hosts'));
  }
});

test('seedContentHash: another input, another name; the same inputs, the same name', () => {
  const project = resolveProject(loadText(demo));
  const [db, web] = project.services;
  const hash = (p = project, s = db!, k = keys) => seedContentHash(p, s, p.instances[0]!, k);
  assert.equal(hash(), hash(resolveProject(loadText(demo)), undefined));
  const others = [
    hash(project, { ...db!, user: 'other' }),
    hash(project, web),
    seedContentHash(
      project,
      db!,
      { ...project.instances[0]!, hosts: { ...project.instances[0]!.hosts, x: '10.10.0.9' } },
      keys,
    ),
    hash(project, db, { ...keys, projectPublicKey: 'ssh-ed25519 AAAAother' }),
    hash(project, {
      ...db!,
      spec: { ...db!.spec, cloud_init: { ...db!.spec.cloud_init, runcmd: ['echo three'] } },
    }),
  ];
  assert.equal(new Set([hash(), ...others]).size, others.length + 1);
});

test("seedContentHash: a bind mount's host path is not in it (a moved project keeps its seeds); its target is", () => {
  const project = resolveProject(loadText(demo));
  const web = project.services.find((s) => s.name === 'web')!;
  const hash = (service: typeof web) =>
    seedContentHash(
      project,
      service,
      project.instances.find((i) => i.service === 'web')!,
      keys,
    );
  const withBind = (change: Partial<(typeof web.mounts)[number]>) => ({
    ...web,
    mounts: web.mounts.map((m) => (m.type === 'bind' ? { ...m, ...change } : m)),
  });
  assert.equal(hash(withBind({ source: '/elsewhere/www' })), hash(web), 'a moved bind mount source');
  assert.notEqual(hash(withBind({ target: '/srv/other' })), hash(web), 'another target');
  assert.notEqual(hash(withBind({ readOnly: false })), hash(web), 'read-write now');
});

test('the rendered seed is pinned to seedFormat: rendering other bytes needs a new format', () => {
  const project = resolveProject(loadText(demo));
  const db = project.services.find((s) => s.name === 'db')!;
  const files = Object.entries<string>({ ...renderSeed(project, db, project.instances[0]!, keys) }).map(
    ([name, content]) => ({ name, content }),
  );
  // If this fails, render.ts writes other bytes from the same inputs: bump seedFormat in
  // resources/seed.ts (so every seed on a host is written again) and update this hash.
  assert.equal(seedHash(files).slice(0, 16), 'b84f254b68e6b5a0');
});

test("long-form mounts: a bind mount's mount_options go into its fstab line; automount: false is shared, not mounted", () => {
  const text = `
name: long
services:
  web:
    image: ./base.qcow2
    volumes:
      - { type: bind, source: ./www, target: /srv/www, read_only: true, mount_options: "cache=loose,msize=104857600" }
      - { type: bind, source: ./www, target: /share, automount: false }
`;
  const userData = seedOf(text, 'web-0')['user-data'];
  assert.match(
    userData,
    /holos0 \/srv\/www 9p trans=virtio,version=9p2000\.L,msize=262144,cache=loose,msize=104857600,ro,nofail,x-holos 0 0/,
  );
  assert.doesNotMatch(userData, /\/share/, 'not in fstab, not mounted');
  const project = resolveProject(loadText(text));
  assert.deepEqual(
    project.services[0]!.mounts.map((m) => [m.target, m.device, m.type === 'bind' && m.automount]),
    [
      ['/srv/www', 'holos0', undefined],
      ['/share', 'holos1', false],
    ],
  );
});
