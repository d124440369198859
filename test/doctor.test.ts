import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { exitCodeOf, formatChecks, needsOf, type Check } from '../src/access/doctor.js';
import { resolveProject } from '../src/compose/resolve.js';
import { runCli } from './support/cli.js';
import { loadText } from './support/compose.js';

// holos doctor on this host's real QEMU, loopback, state dir and /proc: what it says of each,
// and its exit status.

test('the lines: verdict, name, detail, then the fix; exit 1 only for a failure', () => {
  const checks: Check[] = [
    { name: 'qemu', verdict: 'ok', detail: 'QEMU emulator version 7.2.0' },
    { name: 'state dir', verdict: 'warn', detail: 'x', fix: 'chmod 700 /s' },
  ];
  assert.equal(
    formatChecks(checks),
    'ok   qemu       QEMU emulator version 7.2.0\nwarn state dir  x\n                fix: chmod 700 /s',
  );
  assert.equal(exitCodeOf(checks), 0);
  assert.equal(exitCodeOf([...checks, { name: 'ovmf', verdict: 'fail', detail: 'none' }]), 1);
});

test("a project's needs: its memory summed, its largest VM, uefi", () => {
  const project = resolveProject(
    loadText(
      'name: n\nservices:\n  a:\n    image: ./base.qcow2\n    replicas: 2\n    vm: { memory_mb: 256, vcpu: 3 }\n  b:\n    image: ./base.qcow2\n    vm: { uefi: true }\n',
    ),
  );
  assert.deepEqual(needsOf(project), { project: 'n', uefi: true, memoryMb: 1024, vcpus: 3, instances: 3 });
});

test('holos doctor on this host: the checks, a state dir others can read, missing QEMU, a project too big', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'holos-doctor-'));
  const state = join(dir, 'state');
  const env = { HOLOS_STATE_DIR: state, HOLOS_ACCEL: 'tcg' };
  const checksOf = async (extra: NodeJS.ProcessEnv = {}, cwd = dir) => {
    const r = await runCli(['doctor', '--json'], { cwd, env: { ...env, ...extra } });
    const { checks } = JSON.parse(r.stdout) as { checks: Check[] };
    return { code: r.code, byName: new Map(checks.map((c) => [c.name, c])), text: r.stdout };
  };
  try {
    const fresh = await checksOf();
    assert.deepEqual(
      [...fresh.byName.keys()],
      ['qemu', 'qemu-img', 'kvm', 'ovmf', 'loopback', 'state dir', 'disk', 'capacity'],
    );
    assert.equal(fresh.byName.get('qemu')!.verdict, 'ok', 'CI installs QEMU');
    assert.match(fresh.byName.get('qemu')!.detail, /QEMU emulator version \d+\.\d+/);
    assert.equal(fresh.byName.get('loopback')!.verdict, 'ok');
    assert.match(fresh.byName.get('state dir')!.detail, /made on first use, mode 0700/);
    assert.match(fresh.byName.get('capacity')!.detail, /no holos\.yaml here/);

    mkdirSync(state, { mode: 0o755 });
    chmodSync(state, 0o755);
    const open = await checksOf();
    assert.equal(open.code, 1);
    assert.equal(open.byName.get('state dir')!.verdict, 'fail');
    assert.equal(open.byName.get('state dir')!.fix, `chmod 700 ${state}`);
    chmodSync(state, 0o700);

    const noQemu = await checksOf({ HOLOS_QEMU_SYSTEM: join(dir, 'no-qemu') });
    assert.equal(noQemu.code, 1);
    assert.match(noQemu.byName.get('qemu')!.fix!, /apt install qemu-system-x86/);
    assert.equal(noQemu.byName.get('kvm')!.verdict, 'warn', 'no QEMU, no KVM probe');

    writeFileSync(join(dir, 'base.qcow2'), '');
    writeFileSync(
      join(dir, 'holos.yaml'),
      'name: big\nservices:\n  a:\n    image: ./base.qcow2\n    replicas: 4\n    vm: { memory_mb: 1048576, vcpu: 64 }\n',
    );
    const big = await checksOf();
    const capacity = big.byName.get('capacity')!;
    assert.notEqual(capacity.verdict, 'ok', capacity.detail);
    assert.match(
      capacity.detail,
      /^project big: 4 VMs ask for 4\.0 TiB of memory; .*; its largest VM has 64 vCPUs of \d+ here$/,
    );
    assert.ok(capacity.fix, 'with what to do');

    writeFileSync(join(dir, 'holos.yaml'), 'name: bad\nservices:\n  a: {}\n');
    const bad = await checksOf();
    assert.equal(bad.code, 1);
    assert.match(bad.byName.get('project')!.detail, /^1 problem in the compose file: .*holos\.yaml:3:/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
