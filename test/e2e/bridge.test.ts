// End to end, issue #19 (LAN-visible guests): a `driver: bridge` network puts a guest's NIC on a
// host bridge through QEMU's setuid bridge helper, and the guest takes its address from the
// LAN's DHCP. The "LAN" is a network namespace made for the test: a bridge with an address and
// dnsmasq serving DHCP on it. The helper reads its ACL from /etc/qemu/bridge.conf, a path
// compiled into it; the test never writes the host's /etc: the `up` that must pass runs in a
// private mount namespace where /etc is an overlay holding the ACL.
//
// 1. The bridge is missing: `up` says so in one line, before QEMU starts.
// 2. The ACL is missing (the host's /etc): `up` names /etc/qemu/bridge.conf and the line to add.
// 3. With both: the guest boots, gets an address on the LAN, is reached from the LAN by it,
//    and still has its user-mode NIC first for the way out (SSH, the forwards).
//
// One boot under TCG. Figures are diagnostics, never assertions.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  e2eTest,
  netnsGate,
  repoRoot,
  run,
  runHolosIn,
  runOk,
  startHelperIn,
  tempProject,
  withNetns,
} from './harness.js';

const bridge = 'brholos0';
const lan = { host: '192.168.77.1', first: '192.168.77.10', last: '192.168.77.50' };

const composeText = (image: string) => `name: lan
services:
  box:
    image: ${image}
    stop_grace_period: 5s
    networks: [lan]
networks:
  lan:
    driver: bridge
    driver_opts: { holos.bridge.name: ${bridge} }
`;

const has = (tool: string) => run('sh', ['-c', `command -v ${tool}`]).then((r) => r.code === 0);

e2eTest(
  'bridge: a guest on a host bridge gets a LAN address by DHCP and is reached from the LAN',
  async (t, env) => {
    if (!netnsGate(t)) return;
    for (const tool of ['dnsmasq', 'unshare'])
      if (!(await has(tool))) {
        const reason = `bridge e2e: ${tool} is not installed (scripts/install-deps.sh)`;
        if (process.env.CI === 'true') throw new Error(`${reason} (CI=true)`);
        console.error(`# SKIP ${reason}`);
        t.skip(reason);
        return;
      }
    const proj = await tempProject(t);
    await proj.write('holos.yaml', composeText(env.image));
    const holosEnv = { ...proj.env, HOLOS_ACCEL: process.env.HOLOS_ACCEL ?? 'tcg' };
    // An overlay of /etc that holds the helper's ACL, for the one `up` that must pass.
    const overlay = await mkdtemp(join(tmpdir(), 'holos-bridge-etc-'));
    t.after(() => rm(overlay, { recursive: true, force: true }));
    await mkdir(join(overlay, 'upper', 'qemu'), { recursive: true });
    await mkdir(join(overlay, 'work'));
    await runOk('sh', ['-c', `echo 'allow ${bridge}' > ${join(overlay, 'upper', 'qemu', 'bridge.conf')}`]);

    await withNetns(`holos-bridge-${process.pid}`, async (ns) => {
      const holos = (...args: string[]) =>
        runHolosIn(ns, args, { cwd: proj.dir, env: holosEnv, timeoutMs: 10 * 60_000 });

      // 1. No bridge yet.
      const noBridge = await holos('up');
      assert.notEqual(noBridge.code, 0);
      assert.match(
        noBridge.stderr,
        new RegExp(
          `^holos: box-0: network lan: host bridge ${bridge} does not exist; create it \\(ip link add ${bridge} type bridge\\)`,
          'm',
        ),
      );

      // The LAN: a bridge with an address, and a DHCP server on it.
      await runOk('ip', ['-n', ns.name, 'link', 'add', bridge, 'type', 'bridge']);
      await runOk('ip', ['-n', ns.name, 'addr', 'add', `${lan.host}/24`, 'dev', bridge]);
      await runOk('ip', ['-n', ns.name, 'link', 'set', bridge, 'up']);
      const dhcp = startHelperIn(t, ns, [
        'dnsmasq',
        '--keep-in-foreground',
        '--conf-file=/dev/null',
        `--interface=${bridge}`,
        '--bind-interfaces',
        `--dhcp-range=${lan.first},${lan.last},255.255.255.0,1h`,
        '--port=0',
        '--leasefile-ro',
        '--pid-file=',
        '--user=root',
        '--log-dhcp',
        '--log-facility=-',
      ]);

      // 2. The host has no ACL for it (or one that does not allow it).
      if (existsSync('/etc/qemu/bridge.conf'))
        t.diagnostic('this host has its own bridge ACL: step 2 is not checked');
      else {
        const noAcl = await holos('up');
        assert.notEqual(noAcl.code, 0);
        assert.match(
          noAcl.stderr,
          new RegExp(
            `^holos: box-0: network lan: /etc/qemu/bridge.conf (is missing|does not allow ${bridge}); add the line "allow ${bridge}" to it`,
            'm',
          ),
        );
      }

      // 3. In a mount namespace whose /etc holds the ACL.
      const started = Date.now();
      const script = [
        `mount -t overlay overlay -o lowerdir=/etc,upperdir=${overlay}/upper,workdir=${overlay}/work /etc`,
        `exec ip netns exec ${ns.name} "$0" "$@"`,
      ].join(' && ');
      const up = await run(
        'unshare',
        [
          '--mount',
          '--propagation',
          'private',
          'sh',
          '-c',
          script,
          process.execPath,
          join(repoRoot, 'dist', 'cli.js'),
          'up',
          '--wait',
        ],
        { cwd: proj.dir, env: holosEnv, timeoutMs: 10 * 60_000 },
      );
      assert.equal(up.code, 0, `up: ${up.stderr}`);
      t.diagnostic(`boot on the bridge, ready: ${((Date.now() - started) / 1000).toFixed(0)}s`);

      // The guest's LAN address, once its DHCP lease is there.
      let address = '';
      for (let tries = 0; tries < 30 && !address; tries++) {
        const r = await holos(
          'exec',
          'box',
          '--',
          'sh',
          '-c',
          `ip -4 -o addr show | grep -o 'inet 192\\.168\\.77\\.[0-9]*' | cut -d' ' -f2`,
        );
        address = r.stdout.trim();
        if (!address) await sleep(2_000);
      }
      assert.ok(address, `no LAN address in the guest; dnsmasq said:\n${dhcp.output()}`);
      t.diagnostic(`LAN address: ${address}`);
      // From the LAN to the guest by its LAN address: its sshd answers.
      const banner = await runOk('ip', [
        'netns',
        'exec',
        ns.name,
        process.execPath,
        '-e',
        `const s = require('net').connect(22, ${JSON.stringify(address)}); s.setTimeout(10000, () => process.exit(1)); s.once('data', (d) => { console.log(String(d).trim()); process.exit(0); }); s.on('error', () => process.exit(1));`,
      ]);
      assert.match(banner.stdout, /^SSH-2\.0-OpenSSH/, 'the guest answers on its LAN address');
      const routes = await holos('exec', 'box', '--', 'ip', 'route', 'show', 'default');
      assert.match(
        routes.stdout.split('\n')[0] ?? '',
        /via 10\.0\.2\.2/,
        `the user-mode NIC stays the way out:\n${routes.stdout}`,
      );
      const ps = JSON.parse((await holos('ps', '--format', 'json')).stdout) as {
        instances: { networks: Record<string, string | null>; phase: string; cloud_init: unknown }[];
      };
      assert.deepEqual(
        ps.instances[0]!.networks,
        { lan: null },
        "the LAN's DHCP gives the address, not holos",
      );
      // Its first two starts failed after its disk was made: its first boot is still tracked.
      assert.equal(ps.instances[0]!.phase, 'ready');
      assert.notEqual(ps.instances[0]!.cloud_init, null, "up --wait waited for cloud-init's verdict");

      const down = await holos('down');
      assert.equal(down.code, 0, down.stderr);
    });
  },
);
