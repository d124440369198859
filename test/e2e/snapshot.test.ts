// End to end, issue #18 (snapshots): a two-VM stack on the test image, inside a network
// namespace made for the test. db has a named volume.
//
// 1. Live: a file in db's root disk and one on its volume, `snapshot save db one` while it
//    runs; the first changed, the second deleted; `snapshot restore db one --yes` brings both
//    back, and db's QEMU ran throughout (the same process: it continues from the snapshot).
// 2. The stack at one moment: a counter in each VM, `snapshot save --all`, both counters moved
//    on, `snapshot restore --all`: both back to the same moment.
// 3. Offline: db stopped, a snapshot of its disks only; started, the file changed and the
//    volume's deleted; such a snapshot is refused on the running VM, with what to do, and so is
//    an export of its disk as it is now; stopped again, restored.
// 4. What the restore left, booted elsewhere: db's root disk through `holos export`, as the
//    image of another project, and its volume through `holos volumes export` and `import`: both
//    files are back.
//
// Save and restore times are printed beside the stack's `up` and `down`: diagnostics, never
// assertions. Two boots, then one more of db and one of the exported image under TCG.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { e2eTest, netnsGate, runHolosIn, tempProject, withNetns } from './harness.js';

const composeText = (image: string) => `name: snaps
services:
  db:
    image: ${image}
    stop_grace_period: 10s
    volumes: ["data:/data"]
  web:
    image: ${image}
    stop_grace_period: 10s
volumes:
  data: { size: 64M }
`;

e2eTest(
  'snapshot: live and offline restores of a root disk and a volume; the whole stack at one moment',
  async (t, env) => {
    if (!netnsGate(t)) return;
    const proj = await tempProject(t);
    await proj.write('holos.yaml', composeText(env.image));
    await withNetns(`holos-snapshot-${process.pid}`, async (ns) => {
      const holos = (...args: string[]) =>
        runHolosIn(ns, args, {
          cwd: proj.dir,
          env: { ...proj.env, HOLOS_ACCEL: process.env.HOLOS_ACCEL ?? 'tcg' },
          timeoutMs: 10 * 60_000,
        });
      const holosOk = async (...args: string[]) => {
        const r = await holos(...args);
        assert.equal(r.code, 0, `holos ${args.join(' ')}: ${r.stderr}`);
        return r;
      };
      const timed = async (...args: string[]) => {
        const started = Date.now();
        await holosOk(...args);
        return `${((Date.now() - started) / 1000).toFixed(1)}s`;
      };
      const guest = async (instance: string, script: string) =>
        (await holosOk('exec', '-w', '6m', instance, '--', 'sudo', 'sh', '-c', script)).stdout;
      const pidOf = async (instance: string) => {
        const { instances } = JSON.parse((await holosOk('ps', '--format', 'json')).stdout) as {
          instances: { instance: string; pid: number | null }[];
        };
        return instances.find((i) => i.instance === instance)!.pid;
      };

      const up = await timed('up', '--wait');

      // 1. Live, on db.
      await guest('db-0', 'echo before > /root/f && echo before > /data/f && sync');
      const pid = await pidOf('db-0');
      const saveOne = await timed('snapshot', 'save', 'db', 'one');
      await guest('db-0', 'echo after > /root/f && rm /data/f && sync');
      assert.equal(
        await guest('db-0', 'cat /root/f; ls /data/f 2>&1 || true'),
        "after\nls: cannot access '/data/f': No such file or directory\n",
      );
      const refused = await holos('snapshot', 'restore', 'db', 'one');
      assert.notEqual(refused.code, 0, 'a restore without a terminal needs --yes');
      assert.match(refused.stderr, /^holos: restore throws data away: confirm it with --yes/m);
      const restoreOne = await timed('snapshot', 'restore', 'db', 'one', '--yes');
      assert.equal(
        await guest('db-0', 'cat /root/f /data/f'),
        'before\nbefore\n',
        'the root disk and the volume are back',
      );
      assert.equal(await pidOf('db-0'), pid, 'db ran throughout: the same QEMU');

      // 2. The stack at one moment.
      await guest('db-0', 'echo 1 > /root/counter && sync');
      await guest('web-0', 'echo 1 > /root/counter && sync');
      const saveAll = await timed('snapshot', 'save', '--all', 'stack');
      await guest('db-0', 'echo 2 > /root/counter && sync');
      await guest('web-0', 'echo 2 > /root/counter && sync');
      const restoreAll = await timed('snapshot', 'restore', '--all', 'stack', '--yes');
      assert.equal(await guest('db-0', 'cat /root/counter'), '1\n');
      assert.equal(await guest('web-0', 'cat /root/counter'), '1\n');
      const listed = JSON.parse((await holosOk('snapshot', 'ls', '--format', 'json')).stdout) as {
        snapshots: { instance: string; name: string; ram: boolean; disks: string[] }[];
      };
      assert.deepEqual(
        listed.snapshots.map((s) => `${s.instance} ${s.name} ${s.ram} ${s.disks.join('+')}`),
        [
          'db-0 one true root disk+volume data',
          'db-0 stack true root disk+volume data',
          'web-0 stack true root disk',
        ],
      );

      // 3. Offline: a snapshot of db's disks taken while it is stopped, restored while it is stopped.
      await guest('db-0', 'echo offline > /root/f && echo offline > /data/f && sync');
      await holosOk('stop', 'db');
      await holosOk('snapshot', 'save', 'db', 'cold');
      const cold = JSON.parse((await holosOk('snapshot', 'ls', 'db', '--format', 'json')).stdout) as {
        snapshots: { name: string; ram: boolean; disks: string[] }[];
      };
      const taken = cold.snapshots.find((s) => s.name === 'cold');
      assert.deepEqual(
        taken && [taken.ram, taken.disks],
        [false, ['root disk', 'volume data']],
        "a stopped VM's snapshot: its disks, no RAM",
      );
      await holosOk('start', 'db');
      await guest('db-0', 'echo changed > /root/f && rm /data/f && sync');
      const diskOnly = await holos('snapshot', 'restore', 'db', 'cold', '--yes');
      assert.notEqual(diskOnly.code, 0);
      assert.equal(
        diskOnly.stderr,
        "holos: db-0's snapshot cold was taken while it was stopped (disks only): stop it first (holos stop db), restore, then start it\n",
      );
      const golden = join(proj.dir, 'golden.qcow2');
      const running = await holos('export', 'db', golden);
      assert.notEqual(running.code, 0);
      assert.match(running.stderr, /^holos: db-0 is running, so its disk changes under the copy/);
      const exported = await timed('export', 'db', join(proj.dir, 'at-one.qcow2'), '--snapshot', 'one');
      await holosOk('stop', 'db');
      const restoreCold = await timed('snapshot', 'restore', 'db', 'cold', '--yes');
      const rm = await holosOk('snapshot', 'rm', 'db', 'cold');
      assert.match(rm.stderr, /^db-0: snapshot cold removed$/m);

      // 4. db's disks as restored, booted elsewhere: its root disk exported as the image of another
      // project, its volume exported and imported there; both files are back at cold's moment.
      await holosOk('export', 'db', golden);
      const volume = join(proj.dir, 'data.qcow2');
      await holosOk('volumes', 'export', 'data', volume);
      const other = await tempProject(t);
      await other.write(
        'holos.yaml',
        `name: golden\nservices:\n  copy:\n    image: ${golden}\n    stop_grace_period: 10s\n    volumes: ["data:/data"]\nvolumes:\n  data: {}\n`,
      );
      const inOther = async (...args: string[]) => {
        const r = await runHolosIn(ns, args, {
          cwd: other.dir,
          env: { ...other.env, HOLOS_ACCEL: process.env.HOLOS_ACCEL ?? 'tcg' },
          timeoutMs: 10 * 60_000,
        });
        assert.equal(r.code, 0, `holos ${args.join(' ')} (golden): ${r.stderr}`);
        return r;
      };
      await inOther('volumes', 'import', volume, 'data');
      await inOther('up', '--wait');
      const copied = await inOther('exec', '-w', '6m', 'copy', '--', 'sudo', 'cat', '/root/f', '/data/f');
      assert.equal(
        copied.stdout,
        'offline\noffline\n',
        "cold's root disk and volume, restored offline, boot elsewhere",
      );
      await inOther('down', '-v');

      const down = await timed('down', '-v');
      t.diagnostic(
        `stack (2 VMs): up --wait ${up}, down ${down}; snapshot save --all ${saveAll}, restore --all ${restoreAll}; ` +
          `db alone: save ${saveOne}, restore ${restoreOne} (live), restore ${restoreCold} (stopped); export ${exported}`,
      );
    });
  },
);
