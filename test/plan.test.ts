import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { validateComposeFile } from '../src/compose/load.js';
import { resolveProject } from '../src/compose/resolve.js';
import { desiredState, type Desired, type DesiredInstance, type Keys } from '../src/reconcile/desired.js';
import type { Observed } from '../src/reconcile/observe.js';
import { graphLines, plan, type Plan, type Targets } from '../src/reconcile/plan.js';
import { normalise, type AppliedRecord, type InstanceObserved } from '../src/resources/instance.js';
import { projectLayout } from '../src/state/layout.js';
import { readApplied } from '../src/state/records.js';
import { hostsDigest } from '../src/resources/seed.js';
import { parse, stringify } from 'yaml';
import { composeDir } from './support/compose.js';

// The planner on (desired, observed) pairs. Desired comes from real compose text; observed is
// built by hand the way observeState would report a host where an earlier desired state was
// applied, so each case is "the host holds X, the file now says Y".

const shop = `
name: shop
services:
  db:
    image: ./base.qcow2
    volumes: ["data:/var/lib/data"]
    healthcheck: { test: pg_isready }
  web:
    image: ./base.qcow2
    replicas: 2
    depends_on: [db]
    ports: ["8080:80"]
    vm: { memory_mb: 512 }
    stop_grace_period: 30s
    cloud_init:
      runcmd: ["echo hello"]
volumes:
  data: { size: 1G }
`;

const hostKeyPair = (name: string) => ({ privateKey: `k-${name}`, publicKey: `ssh-ed25519 B${name} h` });
const keys: Keys = {
  project: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 project',
  hosts: Object.fromEntries(['db-0', 'web-0', 'web-1', 'web-2', 'cache-0'].map((n) => [n, hostKeyPair(n)])),
};

const stateDir = '/nonexistent/holos-state';

/**
 * A compose file in one directory that can be edited: each `desired(text)` rewrites it and
 * resolves it the way openProject does, keeping the addresses handed out by `previous`.
 */
function composeFile(text: string, files: string[] = []) {
  const dir = composeDir(text);
  for (const file of files) writeFileSync(join(dir, file), '');
  return (revised = text, previous?: Desired): Desired => {
    writeFileSync(join(dir, 'holos.yaml'), revised);
    const result = validateComposeFile(join(dir, 'holos.yaml'));
    if (!result.ok) throw new Error(result.problems.join('\n'));
    const project = resolveProject(result.loaded, previous?.project.allocation);
    return desiredState(project, projectLayout(stateDir, result.loaded.project), keys);
  };
}

const byName = (desired: Desired) => new Map(desired.instances.map((d) => [d.resolved.name, d]));
const perInstance = <T>(desired: Desired, fn: (d: DesiredInstance) => T): Record<string, T> =>
  Object.fromEntries(desired.instances.map((d) => [d.resolved.name, fn(d)]));

function appliedRecord(d: DesiredInstance): AppliedRecord {
  return {
    schema_version: 2,
    spec: normalise(d.spec),
    state: 'running',
    pid: 1000 + d.resolved.index,
    sshPort: 2200 + d.resolved.index,
    hostPorts: d.resolved.ports.map((p) => p.host),
    accel: { kind: 'kvm', hostCpu: 'host' },
    hostPublicKey: hostKeyPair(d.resolved.name).publicKey,
    startedAt: '2025-01-01T00:00:00.000Z',
    // The guest has the hosts table of the project it was started in.
    hosts: hostsDigest(d.seed.resolved.hosts),
  };
}

const runningInstance = (d: DesiredInstance): InstanceObserved => {
  const applied = appliedRecord(d);
  return { pid: applied.pid, status: 'running', applied };
};

const hostKeysOf = <T>(desired: Desired, fn: (d: DesiredInstance) => T): Record<string, T> =>
  Object.fromEntries(desired.instances.map((d) => [d.hostKey.name, fn(d)]));

/** What observeState reports for `wanted` on a host where nothing was ever made. */
function freshHost(wanted: Desired): Observed {
  return {
    keypair: { [wanted.project.name]: {}, ...hostKeysOf(wanted, () => ({})) },
    image: Object.fromEntries([...wanted.images.keys()].map((ref) => [ref, { exists: true }])),
    volume: Object.fromEntries(wanted.volumes.map((v) => [v.name, { exists: false }])),
    segment: Object.fromEntries([...wanted.specs.segment.keys()].map((n) => [n, {}])),
    overlay: perInstance(wanted, () => ({ exists: false })),
    seed: perInstance(wanted, () => ({ exists: false })),
    nvram: Object.fromEntries([...wanted.specs.nvram.keys()].map((n) => [n, { exists: false }])),
    instance: perInstance(wanted, () => ({})),
  };
}

/** What observeState reports for `wanted` on a host where `applied` was carried out and runs. */
function hostRunning(applied: Desired, wanted: Desired = applied): Observed {
  const was = byName(applied);
  const made = (d: DesiredInstance) => was.get(d.resolved.name);
  const strays = applied.instances.filter(
    (d) => !wanted.instances.some((w) => w.resolved.name === d.resolved.name),
  );
  return {
    keypair: {
      [wanted.project.name]: { publicKey: keys.project },
      ...hostKeysOf(wanted, (d) => (made(d) ? { publicKey: hostKeyPair(d.resolved.name).publicKey } : {})),
    },
    image: Object.fromEntries([...wanted.images.keys()].map((ref) => [ref, { exists: true }])),
    // Every volume the applied project made is on disk, whether the file still names it or not.
    volume: Object.fromEntries(
      [...new Set([...wanted.volumes, ...applied.volumes].map((v) => v.name))].map((name) => {
        const old = applied.volumes.find((a) => a.name === name);
        return [name, old ? { exists: true, virtualSize: old.size } : { exists: false }];
      }),
    ),
    // The switches of the applied project run (a pid of the test's own: plans read no process).
    segment: Object.fromEntries(
      [...new Set([...applied.specs.segment.keys(), ...wanted.specs.segment.keys()])].map((n) => [
        n,
        applied.specs.segment.has(n) ? { pid: 4242 } : {},
      ]),
    ),
    overlay: perInstance(wanted, (d) => {
      const old = made(d)?.overlay;
      return old
        ? {
            exists: true,
            backingFile: old.base.path,
            backingFormat: old.base.format,
            virtualSize: old.size ?? 2 ** 30,
          }
        : { exists: false };
    }),
    // The seed file is named by its content hash: it exists only if the content is the same.
    seed: perInstance(wanted, (d) => ({ exists: made(d)?.seed.path === d.seed.path })),
    nvram: Object.fromEntries([...wanted.specs.nvram.keys()].map((n) => [n, { exists: was.has(n) }])),
    instance: {
      ...perInstance(wanted, (d) => {
        const old = made(d);
        return old ? runningInstance(old) : {};
      }),
      ...Object.fromEntries(strays.map((d) => [d.resolved.name, runningInstance(d)])),
    },
  };
}

/** The same observation with one instance seen differently. */
function withInstance(observed: Observed, name: string, seen: Partial<InstanceObserved>): Observed {
  return {
    ...observed,
    instance: { ...observed.instance, [name]: { ...observed.instance[name], ...seen } },
  };
}

const up = (desired: Desired): Targets => ({
  services: Object.fromEntries(desired.project.services.map((s) => [s.name, 'running'])),
  strays: 'absent',
});

/** One line per action, as a person reads the plan. */
const lines = (p: Plan) => p.actions.map((a) => `${a.kind} ${a.verb} ${a.name}: ${a.reason}`);

const seedContent = (desired: Desired, name: string) =>
  `content ${byName(desired).get(name)!.seed.hash!.slice(0, 8)}`;

test('a fresh project: keys, volume, then per instance in start order key, disk, seed, instance', () => {
  const desired = composeFile(shop)();
  const result = plan(desired, freshHost(desired), up(desired));
  assert.equal(result.schema_version, 1);
  assert.equal(result.project, 'shop');
  const perInstanceLines = (name: string) => [
    `keypair generate ${name} host key: no key pair yet`,
    `overlay create ${name}: no root disk`,
    `seed write ${name}: ${seedContent(desired, name)}`,
    `instance create ${name}: new instance`,
  ];
  assert.deepEqual(lines(result), [
    'keypair generate shop: no key pair yet',
    'volume create data: new volume of 1G',
    'segment start default: its switch',
    ...perInstanceLines('db-0'),
    ...perInstanceLines('web-0'),
    ...perInstanceLines('web-1'),
  ]);
  for (const action of result.actions.filter((a) => a.instance !== undefined)) {
    assert.equal(action.service, action.instance!.replace(/-\d+$/, ''), JSON.stringify(action));
    assert.equal(action.patch, undefined);
  }
});

test('a converged project plans nothing', () => {
  const desired = composeFile(shop)();
  assert.deepEqual(plan(desired, hostRunning(desired), up(desired)).actions, []);
});

test('vm.memory_mb of web changed: restart of web instances only, with the patch', () => {
  const desired = composeFile(shop);
  const before = desired();
  const after = desired(shop.replace('memory_mb: 512', 'memory_mb: 1024'), before);
  const result = plan(after, hostRunning(before, after), up(after));
  assert.deepEqual(lines(result), [
    'instance restart web-0: vm.memory_mb changed',
    'instance restart web-1: vm.memory_mb changed',
  ]);
  for (const action of result.actions) {
    assert.equal(action.service, 'web');
    assert.deepEqual(action.patch, [{ op: 'replace', path: '/vm/memory_mb', value: 1024 }]);
  }
});

test("web's cloud_init.runcmd changed: web gets a new disk, seed and VM; db is untouched", () => {
  const desired = composeFile(shop);
  const before = desired();
  const after = desired(shop.replace('echo hello', 'echo bye'), before);
  const result = plan(after, hostRunning(before, after), up(after));
  const recreated = (name: string) => [
    `overlay recreate ${name}: a new root disk, so cloud-init runs again`,
    `seed write ${name}: ${seedContent(after, name)}`,
    `instance recreate ${name}: seed changed`,
  ];
  assert.deepEqual(lines(result), [...recreated('web-0'), ...recreated('web-1')]);
  const web0 = result.actions.find((a) => a.kind === 'instance' && a.name === 'web-0')!;
  assert.deepEqual(web0.patch, [
    { op: 'replace', path: '/seed', value: byName(after).get('web-0')!.spec.seed },
  ]);
  assert.ok(result.actions.every((a) => a.service === 'web'));
});

test('replicas 2 → 1: the stray web-1 is removed; the others only get a new hosts table', () => {
  const desired = composeFile(shop);
  const before = desired();
  const after = desired(shop.replace('replicas: 2', 'replicas: 1'), before);
  const result = plan(after, hostRunning(before, after), up(after));
  const hostsChanged = 'the hosts table changed; the guest reads it at its next boot';
  const rewritten = 'the hosts table changed: /etc/hosts is rewritten over SSH (no restart)';
  assert.deepEqual(lines(result), [
    `seed write db-0: ${hostsChanged}`,
    `instance update db-0: ${rewritten}`,
    `seed write web-0: ${hostsChanged}`,
    `instance update web-0: ${rewritten}`,
    'instance remove web-1: replicas of web are now 1',
  ]);
  assert.equal(result.actions.at(-1)!.service, 'web');
});

test('a service deleted from the file: its instances are removed, and the plan says why', () => {
  const withCache = shop.replace('services:\n', 'services:\n  cache:\n    image: ./base.qcow2\n');
  const desired = composeFile(withCache);
  const before = desired();
  const after = desired(shop, before);
  const result = plan(after, hostRunning(before, after), up(after));
  assert.deepEqual(
    result.actions
      .filter((a) => a.kind === 'instance' && a.verb !== 'update')
      .map((a) => [a.verb, a.name, a.reason]),
    [['remove', 'cache-0', 'service cache is no longer in the file']],
  );
  // Running, they get it over SSH too.
  assert.deepEqual(
    result.actions.filter((a) => a.verb === 'update').map((a) => a.name),
    ['db-0', 'web-0', 'web-1'],
  );
  // The others keep their addresses, so nothing but their hosts table changes.
  assert.deepEqual(
    result.actions.filter((a) => a.kind !== 'instance').map((a) => `${a.kind} ${a.verb} ${a.name}`),
    ['seed write db-0', 'seed write web-0', 'seed write web-1'],
  );
});

test('a recorded instance whose QEMU is gone is started again', () => {
  const desired = composeFile(shop)();
  const observed = withInstance(hostRunning(desired), 'db-0', { pid: undefined, status: undefined });
  assert.deepEqual(lines(plan(desired, observed, up(desired))), ['instance start db-0: QEMU exited']);

  const applied = observed.instance['db-0']!.applied!;
  const stopped = withInstance(observed, 'db-0', { applied: { ...applied, state: 'stopped' } });
  assert.deepEqual(lines(plan(desired, stopped, up(desired))), ['instance start db-0: stopped']);
});

test('watch leaves an instance that stopped by itself alone (restart policy): no action for it', () => {
  const desired = composeFile(shop)();
  const observed = withInstance(hostRunning(desired), 'db-0', { pid: undefined, status: undefined });
  assert.deepEqual(lines(plan(desired, observed, { ...up(desired), leave: ['db-0'] })), []);
  assert.deepEqual(lines(plan(desired, observed, { ...up(desired), leave: ['web-0'] })), [
    'instance start db-0: QEMU exited',
  ]);
});

test('QMP run states: paused is resumed, a guest that shut down is restarted', () => {
  const desired = composeFile(shop)();
  const paused = withInstance(hostRunning(desired), 'web-1', { status: 'paused' });
  assert.deepEqual(lines(plan(desired, paused, up(desired))), ['instance resume web-1: paused']);
  for (const status of ['shutdown', 'guest-panicked'] as const) {
    const dead = withInstance(hostRunning(desired), 'web-1', { status });
    assert.deepEqual(lines(plan(desired, dead, up(desired))), [
      `instance restart web-1: guest status is ${status}`,
    ]);
  }
});

test('a missing root disk or one on another base forces a recreate', () => {
  const desired = composeFile(shop)();
  const base = byName(desired).get('web-0')!.overlay.base.path;
  const missing = hostRunning(desired);
  missing.overlay['web-0'] = { exists: false };
  assert.deepEqual(lines(plan(desired, missing, up(desired))), [
    'overlay create web-0: no root disk',
    'instance recreate web-0: no root disk',
  ]);

  const moved = hostRunning(desired);
  moved.overlay['web-0'] = { exists: true, backingFile: '/old/base.qcow2', backingFormat: 'qcow2' };
  const because = `the root disk is based on /old/base.qcow2, not ${base}`;
  assert.deepEqual(lines(plan(desired, moved, up(desired))), [
    `overlay recreate web-0: ${because}`,
    `instance recreate web-0: ${because}`,
  ]);

  const raw = hostRunning(desired);
  raw.overlay['web-0'] = { exists: true, backingFile: base, backingFormat: 'raw' };
  assert.deepEqual(lines(plan(desired, raw, up(desired))), [
    'overlay recreate web-0: the base image format is raw, not qcow2',
    'instance recreate web-0: the base image format is raw, not qcow2',
  ]);
});

test('healthcheck and stop_grace_period changes are recorded without touching the VM', () => {
  const desired = composeFile(shop);
  const before = desired();
  const after = desired(
    shop.replace('stop_grace_period: 30s', 'stop_grace_period: 5s\n    healthcheck: { test: "true" }'),
    before,
  );
  const result = plan(after, hostRunning(before, after), up(after));
  assert.deepEqual(
    result.actions.map((a) => [a.kind, a.verb, a.name]),
    [
      ['instance', 'record', 'web-0'],
      ['instance', 'record', 'web-1'],
    ],
  );
  const [web0] = result.actions;
  assert.equal(web0!.reason, 'healthcheck, stop_grace_period changed (no VM action)');
  assert.deepEqual(web0!.patch, [
    {
      op: 'replace',
      path: '/healthcheck',
      value: { test: ['sh', '-c', 'true'], interval: 30_000, retries: 3, start_period: 0, timeout: 5_000 },
    },
    { op: 'replace', path: '/stop_grace_period', value: 5_000 },
  ]);
});

test('target stopped stops only the live instances', () => {
  const desired = composeFile(shop)();
  const observed = withInstance(hostRunning(desired), 'web-1', { pid: undefined, status: undefined });
  const result = plan(desired, observed, { services: { db: 'stopped', web: 'stopped' } });
  assert.deepEqual(lines(result), [
    'instance stop db-0: stop requested',
    'instance stop web-0: stop requested',
    // No VM of the project runs afterwards: its switch stops too, after them.
    'segment stop default: no VM on it runs',
  ]);
  const stopSwitch = result.actions.at(-1)!;
  assert.deepEqual(stopSwitch.after, ['instance:db-0', 'instance:web-0']);
});

test('target absent removes every instance that has a process or a record, and no other', () => {
  const desired = composeFile(shop)();
  let observed = withInstance(hostRunning(desired), 'web-1', { pid: undefined, status: undefined });
  // web-0 was never made: nothing of it on disk.
  observed = withInstance(observed, 'web-0', { pid: undefined, status: undefined, applied: undefined });
  observed.overlay['web-0'] = { exists: false };
  observed.seed['web-0'] = { exists: false };
  observed.keypair['web-0 host key'] = {};
  const result = plan(desired, observed, { services: { db: 'absent', web: 'absent' }, strays: 'absent' });
  assert.deepEqual(lines(result), [
    'instance remove db-0: down',
    'instance remove web-1: down',
    'segment remove default: no VM on it is left',
  ]);
});

test('existingOnly (start) leaves instances that were never started alone', () => {
  const desired = composeFile(shop)();
  let observed = withInstance(hostRunning(desired), 'web-1', {
    pid: undefined,
    status: undefined,
    applied: undefined,
  });
  observed = withInstance(observed, 'db-0', { pid: undefined, status: undefined });
  const targets = { services: { db: 'running', web: 'running' } } as const;
  assert.deepEqual(lines(plan(desired, observed, { ...targets, existingOnly: true })), [
    'instance start db-0: QEMU exited',
  ]);
  assert.deepEqual(lines(plan(desired, observed, targets)), [
    'instance start db-0: QEMU exited',
    'instance start web-1: no record of its last start',
  ]);
});

test('a replica added: the others only get a seed write for the hosts table, the new one is created', () => {
  const desired = composeFile(shop);
  const before = desired(shop.replace('replicas: 2', 'replicas: 1'));
  const after = desired(shop, before);
  const result = plan(after, hostRunning(before, after), up(after));
  const hostsChanged = 'the hosts table changed; the guest reads it at its next boot';
  const rewritten = 'the hosts table changed: /etc/hosts is rewritten over SSH (no restart)';
  assert.deepEqual(lines(result), [
    `seed write db-0: ${hostsChanged}`,
    `instance update db-0: ${rewritten}`,
    `seed write web-0: ${hostsChanged}`,
    `instance update web-0: ${rewritten}`,
    'keypair generate web-1 host key: no key pair yet',
    'overlay create web-1: no root disk',
    `seed write web-1: ${seedContent(after, 'web-1')}`,
    'instance create web-1: new instance',
  ]);
  assert.equal(byName(after).get('web-1')!.resolved.nics[0]!.ip, '10.10.0.4');
});

test('targets naming only one service leave the others alone', () => {
  const desired = composeFile(shop);
  const before = desired();
  const after = desired(
    shop
      .replace(/memory_mb: 512/, 'memory_mb: 2048')
      .replace('    volumes:', '    vm: { memory_mb: 2048 }\n    volumes:'),
    before,
  );
  const observed = hostRunning(before, after);
  assert.deepEqual(lines(plan(after, observed, up(after))), [
    'instance restart db-0: vm.memory_mb changed',
    'instance restart web-0: vm.memory_mb changed',
    'instance restart web-1: vm.memory_mb changed',
  ]);
  assert.deepEqual(lines(plan(after, observed, { services: { web: 'running' } })), [
    'instance restart web-0: vm.memory_mb changed',
    'instance restart web-1: vm.memory_mb changed',
  ]);
  assert.deepEqual(lines(plan(after, observed, { services: { db: 'stopped' } })), [
    'instance stop db-0: stop requested',
  ]);
});

test('strays are left alone unless the targets name them', () => {
  const desired = composeFile(shop);
  const before = desired();
  const after = desired(shop.replace('replicas: 2', 'replicas: 1'), before);
  const observed = hostRunning(before, after);
  assert.deepEqual(lines(plan(after, observed, { services: { db: 'stopped', web: 'stopped' } })), [
    'instance stop db-0: stop requested',
    'instance stop web-0: stop requested',
  ]);
  assert.deepEqual(
    lines(plan(after, observed, { services: { db: 'stopped', web: 'stopped' }, strays: 'stopped' })),
    [
      'instance stop db-0: stop requested',
      'instance stop web-0: stop requested',
      'instance stop web-1: stop requested',
      'segment stop default: no VM on it runs',
    ],
  );
});

test('a depends_on change is recorded, and the reason names the field, not an array index', () => {
  const desired = composeFile(shop);
  const before = desired();
  const after = desired(shop.replace('    depends_on: [db]\n', ''), before);
  const result = plan(after, hostRunning(before, after), up(after));
  assert.deepEqual(lines(result), [
    'instance record web-0: depends_on changed (no VM action)',
    'instance record web-1: depends_on changed (no VM action)',
  ]);
  assert.deepEqual(result.actions[0]!.patch, [{ op: 'remove', path: '/depends_on/0' }]);
});

test('down also removes an instance that never started but left its disk, seed and host key', () => {
  const desired = composeFile(shop)();
  // `up` made web-1's key, disk and seed, then QEMU failed to start (a host port in use, say).
  const observed = withInstance(hostRunning(desired), 'web-1', {
    pid: undefined,
    status: undefined,
    applied: undefined,
  });
  const down = { services: { db: 'absent', web: 'absent' }, strays: 'absent' } as const;
  assert.deepEqual(lines(plan(desired, observed, down)), [
    'instance remove db-0: down',
    'instance remove web-0: down',
    'instance remove web-1: down',
    'segment remove default: no VM on it is left',
  ]);
  assert.deepEqual(lines(plan(desired, freshHost(desired), down)), []);
});

test('down --volumes: every volume of the project on disk goes, after its instances', () => {
  const desired = composeFile(shop)();
  const host = hostRunning(desired);
  const observed = { ...host, volume: { ...host.volume, 'old-cache': { exists: true } } };
  const down = { services: { db: 'absent', web: 'absent' }, strays: 'absent', removeVolumes: true } as const;
  assert.deepEqual(lines(plan(desired, observed, down)), [
    'instance remove db-0: down',
    'instance remove web-0: down',
    'instance remove web-1: down',
    'volume remove data: down --volumes',
    'volume remove old-cache: down --volumes',
    'segment remove default: no VM on it is left',
  ]);
  // A plain down plans no volume removal.
  const { removeVolumes: _, ...plain } = down;
  assert.ok(plan(desired, observed, plain).actions.every((a) => a.kind !== 'volume'));
});

// The README's change table (`holos up`), walked row by row: each field it names is edited in a
// running project and the plan must do what the row says. A field added to the table needs an
// edit here, and an edit here needs its row.

type Shop = { services: Record<string, Record<string, unknown>>; networks?: Record<string, unknown> };
type Expect = 'recreate' | 'rebase' | 'resize' | 'restart' | 'record' | 'replicas' | 'removed';

interface TableEdit {
  /** The field as the table names it (a backticked name in the first cell, outside parentheses). */
  field: string;
  /** Words of the row's first cell, for fields named in two rows (`image`). */
  row?: string;
  service: string;
  edit: (shop: Shop) => void;
  /** The observed overlays see the new base as the same file (it moved). */
  moved?: boolean;
}

const web = (s: Shop) => s.services.web!;
const db = (s: Shop) => s.services.db!;
const vmOf = (service: Record<string, unknown>) => (service.vm ??= {}) as Record<string, unknown>;
const cloudInitOf = (service: Record<string, unknown>) =>
  (service.cloud_init ??= {}) as Record<string, unknown>;

const tableEdits: TableEdit[] = [
  { field: 'image', row: 'another image', service: 'web', edit: (s) => (web(s).image = './other.qcow2') },
  { field: 'image_format', service: 'web', edit: (s) => (web(s).image_format = 'raw') },
  { field: 'vm.disk_size', service: 'web', edit: (s) => (vmOf(web(s)).disk_size = '4G') },
  { field: 'cloud_init.user', service: 'web', edit: (s) => (cloudInitOf(web(s)).user = 'bob') },
  { field: 'cloud_init.packages', service: 'web', edit: (s) => (cloudInitOf(web(s)).packages = ['curl']) },
  {
    field: 'cloud_init.write_files',
    service: 'web',
    edit: (s) => (cloudInitOf(web(s)).write_files = [{ path: '/etc/x', content: 'y' }]),
  },
  { field: 'cloud_init.bootcmd', service: 'web', edit: (s) => (cloudInitOf(web(s)).bootcmd = ['echo b']) },
  { field: 'cloud_init.runcmd', service: 'web', edit: (s) => (cloudInitOf(web(s)).runcmd = ['echo bye']) },
  {
    field: 'cloud_init.ssh_authorized_keys',
    service: 'web',
    edit: (s) => (cloudInitOf(web(s)).ssh_authorized_keys = ['ssh-ed25519 AAAAC3Nza me@host']),
  },
  {
    field: 'image',
    row: 'the same file at a new path',
    service: 'web',
    edit: (s) => (web(s).image = './moved.qcow2'),
    moved: true,
  },
  { field: 'vm.vcpu', service: 'web', edit: (s) => (vmOf(web(s)).vcpu = 2) },
  { field: 'vm.memory_mb', service: 'web', edit: (s) => (vmOf(web(s)).memory_mb = 1024) },
  { field: 'vm.machine', service: 'web', edit: (s) => (vmOf(web(s)).machine = 'pc') },
  { field: 'vm.cpu_model', service: 'web', edit: (s) => (vmOf(web(s)).cpu_model = 'max') },
  { field: 'vm.uefi', service: 'web', edit: (s) => (vmOf(web(s)).uefi = true) },
  { field: 'vm.extra_args', service: 'web', edit: (s) => (vmOf(web(s)).extra_args = ['-S']) },
  { field: 'ports', service: 'web', edit: (s) => (web(s).ports = ['9090:90']) },
  { field: 'devices', service: 'db', edit: (s) => (db(s).devices = [{ pci: '01:00.0' }]) },
  {
    field: 'volumes',
    row: 'added',
    service: 'db',
    edit: (s) => (db(s).volumes = ['data:/var/lib/data', './share:/share']),
  },
  { field: 'volumes', row: 'removed', service: 'db', edit: (s) => (db(s).volumes = []) },
  { field: 'volumes', row: ':ro', service: 'db', edit: (s) => (db(s).volumes = ['data:/var/lib/data:ro']) },
  { field: 'volumes', row: 'target', service: 'db', edit: (s) => (db(s).volumes = ['data:/srv/data']) },
  { field: 'healthcheck', service: 'db', edit: (s) => (db(s).healthcheck = { test: 'true' }) },
  { field: 'stop_grace_period', service: 'web', edit: (s) => (web(s).stop_grace_period = '10s') },
  { field: 'depends_on', service: 'web', edit: (s) => (web(s).depends_on = []) },
  {
    field: 'networks',
    row: 'joined',
    service: 'web',
    edit: (s) => {
      s.networks = { admin: {} };
      web(s).networks = ['default', 'admin'];
    },
  },
  {
    field: 'networks',
    row: 'ipv4_address',
    service: 'db',
    edit: (s) => {
      s.networks = { default: { ipam: { config: [{ subnet: '10.10.0.0/24' }] } } };
      db(s).networks = { default: { ipv4_address: '10.10.0.200' } };
    },
  },
  { field: 'replicas', row: 'up', service: 'web', edit: (s) => (web(s).replicas = 3) },
  { field: 'replicas', row: 'down', service: 'web', edit: (s) => (web(s).replicas = 1) },
];

/** The rows of the change table under `holos up` in the README: first cell, second cell. */
function changeTable(): { fields: string[]; what: string; expect: Expect }[] {
  const readme = readFileSync(join(import.meta.dirname, '..', 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### `holos up` / `holos apply`'));
  const rows = section
    .slice(0, section.indexOf('\n\n', section.indexOf('| what changed')))
    .split('\n')
    .filter(
      (line) => line.startsWith('| ') && !line.startsWith('| what changed') && !line.startsWith('| ---'),
    );
  return rows.map((row) => {
    const [first = '', second = ''] = row.split(' | ').map((cell) => cell.replace(/^\| |\|$/g, '').trim());
    const outside = first.replace(/\([^)]*\)/g, '');
    const fields = [...outside.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
    const expect: Expect = second.startsWith('recreate')
      ? 'recreate'
      : second.startsWith('restart on the same root disk, pointed')
        ? 'rebase'
        : second.startsWith('restart on the same root disk, grown')
          ? 'resize'
          : second.startsWith('restart')
            ? 'restart'
            : second.startsWith('recorded only')
              ? 'record'
              : second.startsWith('the new instances are created')
                ? 'replicas'
                : 'removed';
    return { fields: fields.length > 0 ? fields : [first], what: first, expect };
  });
}

test("the README's change table is what the planner does, field by field", async (t) => {
  const table = changeTable();
  const rowOf = (edit: TableEdit) => {
    const rows = table.filter((r) => r.fields.includes(edit.field) && r.what.includes(edit.row ?? ''));
    assert.equal(rows.length, 1, `${edit.field} (${edit.row ?? ''}) is in exactly one row of the table`);
    return rows[0]!;
  };
  // Every field of the table has an edit here (the deleted-service row is the last test below).
  for (const row of table)
    for (const field of row.fields)
      if (!field.startsWith('a service deleted'))
        assert.ok(
          tableEdits.some((e) => e.field === field && row.what.includes(e.row ?? '')),
          `no edit walks ${field} of the row "${row.what}"`,
        );

  for (const edit of tableEdits) {
    const { expect } = rowOf(edit);
    await t.test(`${edit.field}${edit.row ? ` (${edit.row})` : ''}: ${expect}`, () => {
      const desired = composeFile(shop, ['other.qcow2', 'moved.qcow2']);
      const before = desired();
      const text = parse(shop) as Shop;
      edit.edit(text);
      const after = desired(stringify(text), before);
      let observed = hostRunning(before, after);
      if (edit.moved)
        observed = {
          ...observed,
          overlay: Object.fromEntries(
            Object.entries(observed.overlay).map(([n, o]) => [n, { ...o, base: 'same' as const }]),
          ),
        };
      const result = plan(after, observed, up(after));
      const mine = byName(after);
      // A running guest whose hosts table changed gets it over SSH: not what a row is about.
      const ofService = result.actions.filter(
        (a) => a.service === edit.service && a.kind === 'instance' && a.verb !== 'update',
      );
      const verbs = ofService.map((a) => `${a.verb} ${a.name}`);
      const names = [...mine.values()]
        .filter((d) => d.service.name === edit.service)
        .map((d) => d.resolved.name);
      const disks = result.actions.filter((a) => a.kind === 'overlay').map((a) => `${a.verb} ${a.name}`);
      if (expect === 'replicas') {
        const was = [...byName(before).values()].filter((d) => d.service.name === edit.service).length;
        assert.deepEqual(
          verbs,
          names.length > was ? [`create ${edit.service}-${was}`] : [`remove ${edit.service}-${names.length}`],
        );
      } else {
        // What each row means for every instance of the service: its action, and its disk's.
        const [vm, disk] = {
          recreate: ['recreate', 'recreate'],
          rebase: ['restart', 'rebase'],
          resize: ['restart', 'resize'],
          restart: ['restart', undefined],
          record: ['record', undefined],
          removed: [undefined, undefined],
        }[expect];
        assert.ok(vm, `no check for ${expect}`);
        assert.deepEqual(
          verbs,
          names.map((n) => `${vm} ${n}`),
        );
        assert.deepEqual(
          disks,
          disk ? names.map((n) => `${disk} ${n}`) : [],
          disk ? 'a new disk' : 'the root disk is kept',
        );
      }
      // Whatever the row, nothing of another service is touched beyond its hosts table (a
      // network joined also has its switch started).
      const others = result.actions.filter((a) => a.service !== edit.service && a.kind !== 'segment');
      for (const action of others)
        assert.ok(
          ['seed write', 'instance update'].includes(`${action.kind} ${action.verb}`),
          JSON.stringify(action),
        );
    });
  }
});

test('a service deleted from the file: its instances are removed (the last row of the table)', () => {
  const table = changeTable();
  assert.equal(table.at(-1)!.expect, 'removed');
  const desired = composeFile(shop);
  const before = desired();
  const text = parse(shop) as Shop;
  delete text.services.web;
  const after = desired(stringify(text), before);
  assert.deepEqual(
    plan(after, hostRunning(before, after), up(after))
      .actions.filter((a) => a.kind === 'instance' && a.verb !== 'update')
      .map((a) => `${a.verb} ${a.name}: ${a.reason}`),
    [
      'remove web-0: service web is no longer in the file',
      'remove web-1: service web is no longer in the file',
    ],
  );
});

// The plan as a graph (golden): each node with what it waits for. Preparation first, an
// instance's disk and seed during its action, web behind db's health gate, teardown reversed.

const scenarios: Record<string, () => Plan> = {
  'a UEFI instance: its variable store is a part, made during its create': () => {
    const desired = composeFile(
      'name: fw\nservices:\n  app:\n    image: ./base.qcow2\n    vm: { uefi: true }\n',
    )();
    return plan(desired, freshHost(desired), up(desired));
  },
  'a fresh project': () => {
    const desired = composeFile(shop)();
    return plan(desired, freshHost(desired), up(desired));
  },
  'web restarts (vm.memory_mb), behind the gate of db, which has nothing to do': () => {
    const desired = composeFile(shop);
    const before = desired();
    const after = desired(shop.replace('memory_mb: 512', 'memory_mb: 1024'), before);
    return plan(after, hostRunning(before, after), up(after));
  },
  'web recreated (cloud_init.runcmd): a new disk and seed during the recreate': () => {
    const desired = composeFile(shop);
    const before = desired();
    const after = desired(shop.replace('echo hello', 'echo bye'), before);
    return plan(after, hostRunning(before, after), up(after));
  },
  'db restarted and web recreated: web waits for db to be healthy': () => {
    const desired = composeFile(shop);
    const before = desired();
    const text = shop
      .replace('echo hello', 'echo bye')
      .replace('healthcheck: { test: pg_isready }', 'healthcheck: { test: pg_isready }\n    vm: { vcpu: 2 }');
    const after = desired(text, before);
    return plan(after, hostRunning(before, after), up(after));
  },
  'replicas 2 → 1 and a new service: the removal first, then the new one': () => {
    const desired = composeFile(shop);
    const before = desired();
    const text =
      shop.replace('replicas: 2', 'replicas: 1') +
      '  cache:\n    image: ./base.qcow2\n    depends_on: [web]\n';
    const after = desired(
      text.replace('volumes:\n  data: { size: 1G }\n', '') + 'volumes:\n  data: { size: 1G }\n',
      before,
    );
    return plan(after, hostRunning(before, after), up(after));
  },
  'down --volumes: web before db, the volume and the switch last': () => {
    const desired = composeFile(shop)();
    return plan(desired, hostRunning(desired), {
      services: { db: 'absent', web: 'absent' },
      strays: 'absent',
      removeVolumes: true,
    });
  },
};

const goldenGraphs: Record<string, string[]> = {
  'a UEFI instance: its variable store is a part, made during its create': [
    '[] -> keypair:fw generate (missing)',
    '[] -> segment:default start (missing)',
    '[] -> keypair:app-0 host key generate (missing)',
    '[] -> overlay:app-0 create (missing) {during instance:app-0}',
    '[keypair:app-0 host key, keypair:fw] -> seed:app-0 write (missing) {during instance:app-0}',
    '[] -> nvram:app-0 create (missing) {during instance:app-0}',
    '[keypair:app-0 host key, keypair:fw, segment:default] -> instance:app-0 create (missing)',
  ],
  'a fresh project': [
    '[] -> keypair:shop generate (missing)',
    '[] -> volume:data create (missing)',
    '[] -> segment:default start (missing)',
    '[] -> keypair:db-0 host key generate (missing)',
    '[] -> overlay:db-0 create (missing) {during instance:db-0}',
    '[keypair:db-0 host key, keypair:shop] -> seed:db-0 write (missing) {during instance:db-0}',
    '[keypair:db-0 host key, keypair:shop, segment:default, volume:data] -> instance:db-0 create (missing)',
    '[] -> keypair:web-0 host key generate (missing)',
    '[] -> overlay:web-0 create (missing) {during instance:web-0}',
    '[keypair:shop, keypair:web-0 host key] -> seed:web-0 write (missing) {during instance:web-0}',
    '[health:db, keypair:shop, keypair:web-0 host key, segment:default] -> instance:web-0 create (missing)',
    '[] -> keypair:web-1 host key generate (missing)',
    '[] -> overlay:web-1 create (missing) {during instance:web-1}',
    '[keypair:shop, keypair:web-1 host key] -> seed:web-1 write (missing) {during instance:web-1}',
    '[health:db, keypair:shop, keypair:web-1 host key, segment:default] -> instance:web-1 create (missing)',
    '[instance:db-0] -> health:db healthy',
  ],
  'web restarts (vm.memory_mb), behind the gate of db, which has nothing to do': [
    '[health:db] -> instance:web-0 restart (changed)',
    '[health:db] -> instance:web-1 restart (changed)',
    '[] -> health:db healthy',
  ],
  'web recreated (cloud_init.runcmd): a new disk and seed during the recreate': [
    '[] -> overlay:web-0 recreate (replaced) {during instance:web-0}',
    '[] -> seed:web-0 write (missing) {during instance:web-0}',
    '[health:db] -> instance:web-0 recreate (changed)',
    '[] -> overlay:web-1 recreate (replaced) {during instance:web-1}',
    '[] -> seed:web-1 write (missing) {during instance:web-1}',
    '[health:db] -> instance:web-1 recreate (changed)',
    '[] -> health:db healthy',
  ],
  'db restarted and web recreated: web waits for db to be healthy': [
    '[] -> instance:db-0 restart (changed)',
    '[] -> overlay:web-0 recreate (replaced) {during instance:web-0}',
    '[] -> seed:web-0 write (missing) {during instance:web-0}',
    '[health:db] -> instance:web-0 recreate (changed)',
    '[] -> overlay:web-1 recreate (replaced) {during instance:web-1}',
    '[] -> seed:web-1 write (missing) {during instance:web-1}',
    '[health:db] -> instance:web-1 recreate (changed)',
    '[instance:db-0] -> health:db healthy',
  ],
  'replicas 2 \u2192 1 and a new service: the removal first, then the new one': [
    '[] -> seed:db-0 write (hosts-changed)',
    '[] -> instance:db-0 update (hosts-changed)',
    '[] -> seed:web-0 write (hosts-changed)',
    '[] -> instance:web-0 update (hosts-changed)',
    '[] -> keypair:cache-0 host key generate (missing)',
    '[] -> overlay:cache-0 create (missing) {during instance:cache-0}',
    '[keypair:cache-0 host key] -> seed:cache-0 write (missing) {during instance:cache-0}',
    '[instance:web-1, keypair:cache-0 host key] -> instance:cache-0 create (missing)',
    '[] -> instance:web-1 remove (not-in-file)',
  ],
  'down --volumes: web before db, the volume and the switch last': [
    '[instance:web-0, instance:web-1] -> instance:db-0 remove (requested)',
    '[] -> instance:web-0 remove (requested)',
    '[] -> instance:web-1 remove (requested)',
    '[instance:db-0, instance:web-0, instance:web-1] -> volume:data remove (requested)',
    '[instance:db-0, instance:web-0, instance:web-1] -> segment:default remove (requested)',
  ],
};

test('plan graphs (golden)', async (t) => {
  assert.deepEqual(Object.keys(goldenGraphs), Object.keys(scenarios));
  for (const [name, make] of Object.entries(scenarios))
    await t.test(name, () => assert.deepEqual(graphLines(make()), goldenGraphs[name]));
});

test('an instance whose first boot was cut short gets a new root disk instead of a start', () => {
  const desired = composeFile(shop)();
  const interrupted = {
    firstBoot: 'pending',
    interrupted: true,
    thisBoot: { cloudInit: false, finished: false },
  } as const;
  const gone = withInstance(hostRunning(desired), 'db-0', {
    pid: undefined,
    status: undefined,
    boot: interrupted,
  });
  assert.deepEqual(lines(plan(desired, gone, up(desired))), [
    'overlay recreate db-0: a new root disk, so cloud-init runs again',
    'instance recreate db-0: its first boot never finished',
  ]);
  assert.equal(plan(desired, gone, up(desired)).actions.at(-1)!.cause, 'interrupted');
  const dead = withInstance(hostRunning(desired), 'db-0', { status: 'shutdown', boot: interrupted });
  assert.deepEqual(
    lines(plan(desired, dead, up(desired))).at(-1),
    'instance recreate db-0: its first boot never finished',
  );
  // Still booting under a live QEMU: left to finish. Booted, or never reached cloud-init: a start.
  const booting = withInstance(hostRunning(desired), 'db-0', { boot: interrupted });
  assert.deepEqual(lines(plan(desired, booting, up(desired))), []);
  const booted = withInstance(gone, 'db-0', {
    boot: { ...interrupted, firstBoot: 'done', interrupted: false },
  });
  assert.deepEqual(lines(plan(desired, booted, up(desired))), ['instance start db-0: QEMU exited']);
  // stop and down leave it as the verb says.
  const stop: Targets = { services: { db: 'stopped', web: 'stopped' } };
  assert.deepEqual(lines(plan(desired, gone, stop)), [
    'instance stop web-0: stop requested',
    'instance stop web-1: stop requested',
    'segment stop default: no VM on it runs',
  ]);
});

test('records of holos before named networks (one `network`) plan nothing; multicast ones restart once', async () => {
  const desired = composeFile(shop)();
  const dir = mkdtempSync(join(tmpdir(), 'holos-legacy-record-'));
  const observed = hostRunning(desired);
  const legacyOf = async (
    d: DesiredInstance,
    segment: { segment: 'switch' } | { group: string; port: number },
  ) => {
    const { networks, uplink_mac: _uplink, ...spec } = appliedRecord(d).spec;
    const { ip, mac } = networks.default!;
    const layout = projectLayout(dir, 'shop').instance(d.resolved.name);
    mkdirSync(layout.dir, { recursive: true });
    writeFileSync(
      layout.applied,
      JSON.stringify({ ...appliedRecord(d), spec: { ...spec, network: { ip, mac, ...segment } } }),
    );
    return readApplied(layout);
  };
  for (const d of desired.instances)
    observed.instance[d.resolved.name] = {
      ...observed.instance[d.resolved.name],
      applied: await legacyOf(d, { segment: 'switch' }),
    };
  assert.deepEqual(plan(desired, observed, up(desired)).actions, []);

  const web0 = byName(desired).get('web-0')!;
  observed.instance['web-0'] = {
    ...observed.instance['web-0'],
    applied: await legacyOf(web0, { group: '239.1.2.3', port: 12345 }),
  };
  assert.deepEqual(lines(plan(desired, observed, up(desired))), [
    "instance restart web-0: its private NIC moves from a multicast group other local users could join to the project's own switch",
  ]);
  rmSync(dir, { recursive: true });
});

test('a service joins a named network: it and its new neighbours change; a service on other networks does not', () => {
  const tiers = `
name: tiers
services:
  db:
    image: ./base.qcow2
    networks: [back]
  api:
    image: ./base.qcow2
    networks: [front, back]
  web:
    image: ./base.qcow2
    networks: [front]
networks:
  front: {}
  back: {}
`;
  const desired = composeFile(tiers);
  const before = desired();
  assert.deepEqual(
    plan(before, freshHost(before), up(before))
      .actions.filter((a) => a.kind === 'segment')
      .map((a) => `${a.verb} ${a.name}`),
    ['start front', 'start back'],
  );
  const after = desired(
    tiers
      .replace('networks: [front]\n', 'networks: [front, admin]\n')
      .replace('  back: {}', '  back: {}\n  admin: {}'),
    before,
  );
  const result = plan(after, hostRunning(before, after), up(after));
  const summary = result.actions.map((a) => `${a.kind} ${a.verb} ${a.name} (${a.cause})`);
  assert.ok(summary.includes('segment start admin (missing)'), summary.join('\n'));
  // web gets a NIC on admin: a new seed (its network config), so a new disk.
  assert.ok(summary.includes('instance recreate web-0 (changed)'), summary.join('\n'));
  assert.ok(!summary.some((s) => / (db-0|api-0) /.test(s)), summary.join('\n'));
});

test('a volume or a root disk grows (online, or during a restart); one that would shrink is refused', () => {
  const desired = composeFile(shop);
  const before = desired();
  const grown = desired(shop.replace('data: { size: 1G }', 'data: { size: 2G }'), before);
  assert.deepEqual(lines(plan(grown, hostRunning(before, grown), up(grown))), [
    'volume resize data: grows from 1G to 2G',
  ]);
  const shrunk = desired(shop.replace('data: { size: 1G }', 'data: { size: 512M }'), before);
  assert.throws(
    () => plan(shrunk, hostRunning(before, shrunk), up(shrunk)),
    (error: Error) =>
      error.name === 'UserError' &&
      error.message ===
        'volumes.data.size is 512M, smaller than the volume (1G); a volume never shrinks (it would lose data): set 1G or more',
  );
  // Down is no use of the volume: nothing is refused.
  const down = { services: { db: 'absent', web: 'absent' }, strays: 'absent' } as const;
  assert.doesNotThrow(() => plan(shrunk, hostRunning(before, shrunk), down));

  const big = shop.replace('vm: { memory_mb: 512 }', 'vm: { memory_mb: 512, disk_size: 4G }');
  const disk4 = desired(big, before);
  const disk8 = desired(big.replace('disk_size: 4G', 'disk_size: 8G'), disk4);
  assert.deepEqual(lines(plan(disk8, hostRunning(disk4, disk8), up(disk8))), [
    'overlay resize web-0: grows from 4G to 8G',
    'instance restart web-0: vm.disk_size grows: the root disk is resized while the VM is down',
    'overlay resize web-1: grows from 4G to 8G',
    'instance restart web-1: vm.disk_size grows: the root disk is resized while the VM is down',
  ]);
  const disk2 = desired(big.replace('disk_size: 4G', 'disk_size: 2G'), disk4);
  assert.throws(
    () => plan(disk2, hostRunning(disk4, disk2), up(disk2)),
    /^UserError: web-0: vm.disk_size 2G is smaller than its root disk \(4G\); a disk never shrinks \(it would lose data\): set 4G or more$/,
  );
});

test("depends_on's long form: service_started waits for the start only; service_healthy for the gate", () => {
  const long = shop
    .replace('depends_on: [db]', 'depends_on: { db: { condition: service_started } }')
    .replace('healthcheck: { test: pg_isready }', 'healthcheck: { test: pg_isready }');
  const started = composeFile(long)();
  const result = plan(started, freshHost(started), up(started));
  assert.deepEqual(result.gates, [], 'no one waits for db to be healthy');
  const web0 = result.actions.find((a) => a.id === 'instance:web-0')!;
  assert.ok(web0.after.includes('instance:db-0'), web0.after.join(' '));

  const healthy = composeFile(long.replace('service_started', 'service_healthy'))();
  const gated = plan(healthy, freshHost(healthy), up(healthy));
  assert.deepEqual(
    gated.gates.map((g) => g.id),
    ['health:db'],
  );
  assert.ok(gated.actions.find((a) => a.id === 'instance:web-0')!.after.includes('health:db'));
});

test('service_completed_successfully: the dependent waits for a completed gate after the one-shot service starts', () => {
  const text = shop
    .replace(
      'depends_on: [db]',
      'depends_on: { db: { condition: service_healthy }, migrate: { condition: service_completed_successfully } }',
    )
    .replace(
      '  web:\n',
      '  migrate:\n    image: ./base.qcow2\n    command: ["/usr/local/bin/migrate"]\n  web:\n',
    );
  const desired = composeFile(text)();
  const result = plan(desired, freshHost(desired), up(desired));
  assert.deepEqual(
    result.gates.map((g) => `${g.id} ${g.kind} after ${g.after.join(',')}`),
    ['health:db health after instance:db-0', 'completed:migrate completed after instance:migrate-0'],
  );
  const web0 = result.actions.find((a) => a.id === 'instance:web-0')!;
  assert.ok(
    web0.after.includes('completed:migrate') && web0.after.includes('health:db'),
    web0.after.join(' '),
  );
  assert.ok(!web0.after.includes('instance:migrate-0'), 'the gate stands for the start');
  assert.ok(graphLines(result).includes('[instance:migrate-0] -> completed:migrate completed'));
});

test("compose's healthcheck forms: CMD is the argv, CMD-SHELL goes through sh, NONE and disable mean none", () => {
  const text = shop.replace(
    'healthcheck: { test: pg_isready }',
    'healthcheck: { test: ["CMD", "pg_isready", "-U", "postgres"], start_interval: 1s, start_period: 10s }',
  );
  const desired = composeFile(text)();
  assert.deepEqual(desired.project.services[0]!.spec.healthcheck, {
    test: ['pg_isready', '-U', 'postgres'],
    interval: 30_000,
    retries: 3,
    start_period: 10_000,
    start_interval: 1_000,
    timeout: 5_000,
  });
  for (const none of ['{ test: ["NONE"] }', '{ disable: true }']) {
    const off = composeFile(shop.replace('healthcheck: { test: pg_isready }', `healthcheck: ${none}`))();
    assert.equal(off.project.services[0]!.spec.healthcheck, null, none);
    assert.deepEqual(plan(off, freshHost(off), up(off)).gates, [], `${none}: web waits for no healthcheck`);
  }
});
