// End to end, issue #11 (items 3 and 4): ordinary edits keep the root disk. One real guest,
// booted from the test image through the holos binary, in a network namespace:
//
// 1. Its runcmd holds a TAB in a one-line command. PyYAML used to refuse the whole user-data
//    (a tab in a plain scalar), and the guest came up with no user and no key; now the command
//    runs, and `holos exec` gets in at all only because cloud-init read the user-data.
// 1b. Issue #18: the named volume grows 1G → 2G online (the guest's df shows it at once, its
//    data kept, no restart); a smaller size is refused in one line.
// 2. On the running VM, a bind mount added, the named volume made read-only and the root disk
//    grown 2G → 3G (#18: resized during the restart; the guest's growpart takes the room; a
//    smaller size is refused): one restart, not a recreate. The root disk is the same file
//    (inode) and a file written in it is still there; the guest mounts what it now has.
// 3. The project directory moved: the project is adopted with a notice, the root disk rebased
//    onto the base image's new path and kept, the bind mount follows.
// 4. `down -v` removes the volume.
//
// Three boots under TCG, a minute or so each. Figures are diagnostics, never assertions.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { link, copyFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Action } from '../../src/resources/kind.js';
import {
  e2eTest,
  netnsGate,
  parseEvents,
  qemusUnder,
  runHolosIn,
  tempProject,
  withNetns,
} from './harness.js';

const composeText = (volumes: string[], { volumeSize = '1G', diskSize = '' } = {}) =>
  [
    'name: edits',
    'services:',
    '  app:',
    '    image: ./base.qcow2',
    '    stop_grace_period: 30s',
    ...(diskSize ? [`    vm: { disk_size: ${diskSize} }`] : []),
    `    volumes: ${JSON.stringify(volumes)}`,
    '    cloud_init:',
    '      runcmd:',
    // A TAB (the YAML escape \t, so a real tab character) inside a one-line command.
    `        - "printf '%s\\\\n' 'a\\tb' > /root/tab.txt"`,
    'volumes:',
    `  data: { size: ${volumeSize} }`,
    '',
  ].join('\n');

const actionsOf = (stdout: string) =>
  parseEvents(stdout).flatMap((e) =>
    e.type === 'action' && e.phase === 'done' ? [`${e.action.kind} ${e.action.verb}`] : [],
  );

e2eTest(
  'edits: a tab in runcmd, mounts edited on a running VM, a moved project: same root disk',
  async (t, env) => {
    if (!netnsGate(t)) return;
    const proj = await tempProject(t);
    const token = randomBytes(8).toString('hex');
    await proj.write('share/hello.txt', `${token}\n`);
    // The base inside the project, as a checkout would carry it: it moves with the directory.
    const base = join(proj.dir, 'base.qcow2');
    await link(env.image, base).catch(() => copyFile(env.image, base));
    await proj.write('holos.yaml', composeText(['data:/data']));
    const holosEnv = { ...proj.env, HOLOS_ACCEL: process.env.HOLOS_ACCEL ?? 'tcg' };
    const disk = join(proj.stateDir, 'instances', 'edits', 'app-0', 'disk.qcow2');

    await withNetns(`holos-edits-${process.pid}`, async (ns) => {
      let cwd = proj.dir;
      const holos = (...args: string[]) =>
        runHolosIn(ns, args, { cwd, env: holosEnv, timeoutMs: 10 * 60_000 });
      const holosOk = async (...args: string[]) => {
        const r = await holos(...args);
        assert.equal(r.code, 0, `holos ${args.join(' ')}: ${r.stderr}`);
        return r;
      };
      /**
       * A command in the guest as root, once sshd answers, and with `untilDone` once cloud-init
       * has finished too. The mounts are bootcmd's work, done before sshd starts (it waits for
       * cloud-init.service, which makes the host keys); only runcmd needs the last stages.
       */
      const guest = async (script: string, { untilDone = false } = {}) =>
        (
          await holosOk(
            'exec',
            '-w',
            '6m',
            'app',
            '--',
            'sudo',
            'sh',
            '-c',
            untilDone ? `cloud-init status --wait >/dev/null; ${script}` : script,
          )
        ).stdout;

      let started = Date.now();
      await holosOk('up');
      assert.equal(
        await guest(
          'cat /root/tab.txt && echo kept > /root/marker && echo on-volume > /data/marker && sync',
          {
            untilDone: true,
          },
        ),
        'a\tb\n',
        'the runcmd with a tab ran',
      );
      t.diagnostic(`first boot to cloud-init done: ${((Date.now() - started) / 1000).toFixed(0)}s`);
      const inode = statSync(disk).ino;
      const grown = { volumeSize: '2G', diskSize: '3G' };

      // 1b. Issue #18: the volume grows online, in the running guest, its data kept; then the
      // root disk grows during a restart (never a new disk); smaller sizes are refused.
      const pidOf = async () => (await holosOk('ps', '--format', 'json')).stdout.match(/"pid":(\d+)/)?.[1];
      const pid = await pidOf();
      const sizeMiB = async (path: string) => Number(await guest(`df -B1M --output=size ${path} | tail -1`));
      const volumeBefore = await sizeMiB('/data');
      await proj.write('holos.yaml', composeText(['data:/data'], { volumeSize: '2G' }));
      const grow = JSON.parse((await holosOk('plan', '--json')).stdout) as { actions: Action[] };
      assert.deepEqual(
        grow.actions.map((a) => `${a.kind} ${a.verb}`),
        ['volume resize'],
        'a bigger volume is a resize, no VM action',
      );
      await holosOk('up');
      const volumeAfter = await sizeMiB('/data');
      t.diagnostic(`volume: ${volumeBefore} MiB → ${volumeAfter} MiB, online`);
      assert.ok(
        volumeAfter > volumeBefore + 900,
        `the filesystem grew online: ${volumeBefore} → ${volumeAfter} MiB`,
      );
      assert.equal(await guest('cat /data/marker'), 'on-volume\n', 'its data is kept');
      assert.equal(await pidOf(), pid, 'the VM was not restarted');

      await proj.write('holos.yaml', composeText(['data:/data'], { volumeSize: '512M' }));
      const shrink = await holos('up');
      assert.notEqual(shrink.code, 0);
      assert.equal(
        shrink.stderr,
        'holos: volumes.data.size is 512M, smaller than the volume (2G); a volume never shrinks (it would lose data): set 2G or more\n',
      );

      // 2. Mounts edited on the running VM, and its root disk grown (#18): one restart.
      const rootBefore = await sizeMiB('/');
      await proj.write('holos.yaml', composeText(['data:/data:ro', './share:/share:ro'], grown));
      const planned = JSON.parse((await holosOk('plan', '--json')).stdout) as { actions: Action[] };
      assert.deepEqual(
        planned.actions.map((a) => `${a.kind} ${a.verb}`),
        ['overlay resize', 'seed write', 'instance restart'],
        'a mount edit and a bigger root disk: a restart with a new seed and the disk resized, never a new disk',
      );
      started = Date.now();
      // The disk and the seed are both made while the VM is down, in either order.
      assert.deepEqual(actionsOf((await holosOk('up', '--json')).stdout).sort(), [
        'instance restart',
        'overlay resize',
        'seed write',
      ]);
      assert.equal(statSync(disk).ino, inode, 'the same root disk');
      // One login for every check (each costs seconds under TCG): a line per answer.
      const [marker, share, options, onVolume, write, fstabLines] = (
        await guest(
          'cat /root/marker; cat /share/hello.txt; findmnt -no OPTIONS /data; cat /data/marker; ' +
            '{ touch /data/x 2>/dev/null && echo wrote || echo refused; }; grep -c x-holos /etc/fstab',
        )
      ).split('\n');
      assert.equal(marker, 'kept', 'a file in the root disk survived');
      assert.equal(share, token, 'the new bind mount is mounted');
      assert.match(options!, /^ro(,|$)/, 'the volume is now read-only');
      assert.equal(onVolume, 'on-volume');
      assert.equal(write, 'refused');
      assert.equal(fstabLines, '2', "holos's fstab lines are this boot's mounts");
      t.diagnostic(`restart with new mounts to a login: ${((Date.now() - started) / 1000).toFixed(0)}s`);
      const rootAfter = await sizeMiB('/');
      t.diagnostic(`root: ${rootBefore} MiB → ${rootAfter} MiB`);
      assert.ok(rootAfter > rootBefore + 500, `growpart took the room: ${rootBefore} → ${rootAfter} MiB`);
      await proj.write(
        'holos.yaml',
        composeText(['data:/data:ro', './share:/share:ro'], { ...grown, diskSize: '1G' }),
      );
      const smaller = await holos('plan');
      assert.notEqual(smaller.code, 0);
      assert.match(
        smaller.stderr,
        /^holos: app-0: vm\.disk_size 1G is smaller than its root disk \(3G\); a disk never shrinks/,
      );
      await proj.write('holos.yaml', composeText(['data:/data:ro', './share:/share:ro'], grown));

      // 3. The project directory moved (renamed).
      const moved = join(proj.dir, '..', 'moved');
      await rename(proj.dir, moved);
      cwd = moved;
      started = Date.now();
      const up = await holosOk('up', '--json');
      const warnings = parseEvents(up.stdout).flatMap((e) => (e.type === 'warning' ? [e.message] : []));
      assert.ok(
        warnings.some((w) =>
          /^project edits was managed from .*\/project\/holos\.yaml, which is gone; adopting it from .*\/moved\/holos\.yaml$/.test(
            w,
          ),
        ),
        `the adoption is said: ${JSON.stringify(warnings)}`,
      );
      assert.deepEqual(actionsOf(up.stdout), ['overlay rebase', 'instance restart']);
      assert.equal(statSync(disk).ino, inode, 'the same root disk, rebased');
      assert.equal(
        await guest('cat /root/marker /share/hello.txt'),
        `kept\n${token}\n`,
        'a file in the root disk survived the move; the bind mount follows the directory',
      );
      t.diagnostic(`restart after the move to a login: ${((Date.now() - started) / 1000).toFixed(0)}s`);
      const again = JSON.parse((await holosOk('plan', '--json')).stdout) as { actions: Action[] };
      assert.deepEqual(again.actions, [], 'converged');

      // 4. down -v removes the volume.
      const volume = join(proj.stateDir, 'volumes', 'edits', 'data.qcow2');
      assert.equal(existsSync(volume), true);
      await holosOk('down', '-v');
      assert.equal(existsSync(volume), false, 'down -v removed the volume');
      assert.deepEqual(qemusUnder(proj.stateDir), []);
    });
  },
);
