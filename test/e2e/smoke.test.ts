// Smoke test of the e2e machinery itself, without holos: the test image boots from a qcow2
// overlay with a NoCloud seed, cloud-init creates the user, pins the SSH host key and writes a
// file, and the guest powers off on an ACPI request over QMP.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildSeedIso } from '../../src/cloudinit/iso.js';
import { yaml11 } from '../../src/cloudinit/render.js';
import { generateKeyPair } from '../../src/ssh/keys.js';
import {
  BOOT_TIMEOUT_MS,
  canUseNetns,
  e2eTest,
  powerDown,
  sshConnectRetry,
  sshExec,
  startGuest,
  tempProject,
  waitForLog,
  waitForSshBanner,
  withGuestSlot,
  withNetns,
} from './harness.js';

e2eTest(
  'smoke: boot the test image with a NoCloud seed, log in over SSH, power off over QMP',
  async (t, env) => {
    const project = await tempProject(t);
    const userKey = generateKeyPair('holos-e2e');
    const hostKey = generateKeyPair('smoke-host');
    const token = randomBytes(8).toString('hex');
    const mac = '52:54:00:e2:e0:01';

    const userData =
      '#cloud-config\n' +
      yaml11({
        users: [
          {
            name: 'holos',
            sudo: 'ALL=(ALL) NOPASSWD:ALL',
            shell: '/bin/bash',
            lock_passwd: true,
            ssh_authorized_keys: [userKey.publicKey],
          },
        ],
        // With ssh_keys given, cloud-init writes those and generates none (ssh_genkeytypes
        // unused; `[]` there fails cloud-init's schema: "is too short").
        ssh_deletekeys: true,
        ssh_keys: { ed25519_private: hostKey.privateKey, ed25519_public: hostKey.publicKey },
        write_files: [{ path: '/etc/holos-smoke', content: `${token}\n`, permissions: '0644' }],
      });
    const networkConfig = yaml11({
      version: 2,
      ethernets: { nic0: { match: { macaddress: mac }, 'set-name': 'eth0', dhcp4: true } },
    });
    const seed = buildSeedIso([
      { name: 'meta-data', content: yaml11({ 'instance-id': `smoke-${token}`, 'local-hostname': 'smoke' }) },
      { name: 'user-data', content: userData },
      { name: 'network-config', content: networkConfig },
    ]);
    const guestDir = join(project.stateDir, 'smoke');
    const seedIso = join(project.stateDir, 'seed.iso');
    await writeFile(seedIso, seed);

    await withGuestSlot(async () => {
      const started = Date.now();
      const since = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
      const guest = await startGuest({
        dir: guestDir,
        image: env.image,
        accel: env.accel,
        qemu: env.qemu,
        seedIso,
        mac,
      });
      t.diagnostic(`QEMU ${guest.pid} (${env.accel.kind}), ssh on 127.0.0.1:${guest.sshPort}`);

      const login = waitForLog(guest.serialLog, /login: /, BOOT_TIMEOUT_MS).then(() => since());
      const banner = await waitForSshBanner(guest.sshPort, BOOT_TIMEOUT_MS);
      t.diagnostic(`ssh banner after ${since()}: ${banner}`);

      // The pinned host key is the only one the guest presents (sshConnect rejects any other).
      const ssh = await sshConnectRetry({
        port: guest.sshPort,
        username: 'holos',
        privateKey: userKey.privateKey,
        hostPublicKey: hostKey.publicKey,
      });
      try {
        const file = await sshExec(ssh, 'cat /etc/holos-smoke');
        assert.equal(file.code, 0, file.stderr);
        assert.equal(file.stdout, `${token}\n`);

        const status = await sshExec(ssh, 'cloud-init status --wait');
        assert.equal(status.code, 0, status.stdout + status.stderr);
        assert.match(status.stdout, /status: done/);
        t.diagnostic(`cloud-init done after ${since()}`);

        const keys = await sshExec(ssh, 'ls /etc/ssh/ | grep "^ssh_host_.*key$"');
        assert.deepEqual(keys.stdout.trim().split('\n'), ['ssh_host_ed25519_key']);
        const sudo = await sshExec(ssh, 'sudo -n id -u && hostname && ip -br link show eth0');
        assert.equal(sudo.code, 0, sudo.stderr);
        assert.match(sudo.stdout, /^0\nsmoke\neth0 +UP/);
        const errors = await sshExec(
          ssh,
          'sudo grep -c -E "WARNING|ERROR|Traceback" /var/log/cloud-init.log || true',
        );
        t.diagnostic(`cloud-init.log warnings/errors: ${errors.stdout.trim()}`);
      } finally {
        ssh.end();
      }
      t.diagnostic(`login prompt on serial after ${await login}`);

      const events = await powerDown(guest);
      assert.ok(events.includes('POWERDOWN'), `QMP events: ${events.join(', ')}`);
      assert.equal(guest.alive(), false);
      t.diagnostic(`powered off after ${since()}`);
    });
  },
);

test('netns: create, run a command inside, delete', async (t) => {
  if (!canUseNetns()) {
    t.skip('netns: needs root and iproute2');
    return;
  }
  const name = `holos-e2e-${process.pid}`;
  const output = await withNetns(name, async (ns) => {
    const addr = await ns.exec('ip', ['-o', 'addr', 'show', 'dev', 'lo']);
    const route = await ns.exec('ip', ['route', 'show', '224.0.0.0/4']);
    const links = await ns.exec('ip', ['-o', 'link']);
    return { addr: addr.stdout, route: route.stdout, links: links.stdout };
  });
  assert.match(output.addr, /inet 127\.0\.0\.1\/8/);
  assert.match(output.route, /224\.0\.0\.0\/4 dev lo/);
  assert.equal(output.links.trim().split('\n').length, 1, 'only lo inside a fresh namespace');
  const list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  assert.doesNotMatch(list, new RegExp(`^${name}\\b`, 'm'));
});
