import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { aclAllows, bridgeHelper, checkBridge } from '../src/qemu/bridge.js';

// A bridge network (`driver: bridge`) joins a host bridge through QEMU's setuid helper, as
// /etc/qemu/bridge.conf allows. The ACL is read as the helper reads it; what is missing on
// the host is said in one line before QEMU starts.

const files: Record<string, string> = {
  '/etc/qemu/bridge.conf': 'allow br0\n# allow br9\ninclude /etc/qemu/lab.conf\n',
  '/etc/qemu/lab.conf': 'allow lab0\ndeny br1\nallow all\n',
  '/etc/qemu/open.conf': 'allow all\n',
};
const read = (path: string) => Promise.resolve(files[path]);

test('the bridge ACL: allow a name or all, a deny wins, includes are followed, comments ignored', async () => {
  assert.equal(await aclAllows('br0', '/etc/qemu/bridge.conf', read), true);
  assert.equal(await aclAllows('lab0', '/etc/qemu/bridge.conf', read), true);
  assert.equal(await aclAllows('br1', '/etc/qemu/bridge.conf', read), false);
  assert.equal(await aclAllows('br9', '/etc/qemu/lab.conf', read), true, 'allow all');
  assert.equal(await aclAllows('br9', '/etc/qemu/missing.conf', read), undefined);
  assert.equal(await aclAllows('x', '/etc/qemu/open.conf', read), true);
  assert.equal(await aclAllows('x', '/etc/qemu/lab.conf', () => Promise.resolve('')), false);
});

test('a bridge that is not there is named, with what to do, before QEMU starts', async () => {
  const expected = existsSync(bridgeHelper)
    ? /^network lan: host bridge holosnobr0 does not exist; create it \(ip link add holosnobr0 type bridge\)|is not setuid root/
    : /^network lan: QEMU's bridge helper .* is missing; install qemu-system-common$/;
  await assert.rejects(checkBridge('lan', 'holosnobr0'), (error: Error) => {
    assert.match(error.message, expected);
    assert.equal(error.name, 'UserError');
    return true;
  });
});
