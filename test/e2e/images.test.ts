// End to end on the real holos binary and real QEMU processes held before their first
// instruction (`-S`: no guest boots), in a network namespace of the test's own with a mirror in
// it (HOLOS_IMAGE_MIRROR). Issue #13: two `holos up` at once, of two projects on one catalog
// image, download it once; both VMs' disks are made on the one cached file. (A VM booted from a
// pulled image, and the image verbs on it, are in access.test.ts.)

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readQcow2Header } from '../../src/observe/qcow2.js';
import {
  heldVmTest,
  parseEvents,
  runHolosIn,
  runOk,
  startNetnsMirror,
  tempProject,
  withNetns,
} from './harness.js';

const compose = (name: string) => `name: ${name}
services:
  app:
    image: debian:12
    stop_grace_period: 1s
    vm: { memory_mb: 128, extra_args: [-S] }
`;

heldVmTest('images: two ups of two projects at once pull debian:12 once', async (t, qemu) => {
  const proj = await tempProject(t);
  // A real qcow2 with data in it, so the download takes long enough for the two to overlap.
  const base = join(proj.dir, 'base.qcow2');
  await runOk(qemu.img, ['create', '-q', '-f', 'qcow2', base, '64M']);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 7 0 48M', base], { stdio: 'ignore' });
  const dirs = await Promise.all(
    ['one', 'two'].map(async (name) => {
      const dir = join(proj.dir, name);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'holos.yaml'), compose(name));
      return dir;
    }),
  );

  await withNetns(`holos-img-${process.pid}`, async (ns) => {
    const mirror = await startNetnsMirror(t, ns);
    await mirror.serveAs('debian:12', base);
    const env = { ...proj.env, HOLOS_ACCEL: 'tcg', HOLOS_IMAGE_MIRROR: mirror.url };
    const holos = (cwd: string, ...args: string[]) => runHolosIn(ns, args, { cwd, env });
    try {
      const ups = await Promise.all(dirs.map((dir) => holos(dir, 'up', '--json')));
      for (const up of ups) assert.equal(up.code, 0, up.stderr);
      const { image } = await mirror.requestsOf('debian:12');
      assert.equal(image.filter((r) => r.method === 'GET').length, 1, JSON.stringify(image));
      // Both planned and ran the pull (neither found the image cached when it planned): the
      // image's lock made the second wait and find what the first downloaded.
      for (const up of ups) {
        const pulled = parseEvents(up.stdout).filter(
          (e) => e.type === 'action' && e.action.id === 'image:debian:12' && e.phase === 'done',
        );
        assert.equal(pulled.length, 1, up.stdout);
      }
      const cached = join(proj.stateDir, 'images', 'debian-12.qcow2');
      for (const name of ['one', 'two']) {
        const header = await readQcow2Header(join(proj.stateDir, 'instances', name, 'app-0', 'disk.qcow2'));
        assert.equal(header?.backingFile, cached, `${name}'s disk is made on the cached file`);
      }
    } finally {
      for (const dir of dirs) await holos(dir, 'down');
    }
  });
});
