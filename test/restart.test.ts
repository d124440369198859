import assert from 'node:assert/strict';
import { test } from 'node:test';
import { leftStopped, restartsAfter } from '../src/reconcile/restart.js';

// compose's restart policies as watch applies them (reconcile/restart.ts); watch.test.ts (e2e)
// proves `always` on a real VM, compose.test.ts (e2e) the default, `no`.

test('each policy after a power-off by the guest and after a failure', () => {
  const cases: [string, boolean, boolean][] = [
    // policy, after a clean power-off, after a failure
    ['no', false, false],
    ['always', true, true],
    ['unless-stopped', true, true],
    ['on-failure', false, true],
    ['on-failure:2', false, true],
  ];
  for (const [policy, poweroff, failure] of cases) {
    assert.equal(restartsAfter(policy, 'poweroff', 0), poweroff, `${policy} after a power-off`);
    assert.equal(restartsAfter(policy, 'failure', 0), failure, `${policy} after a failure`);
  }
});

test('on-failure:N restarts N times, then leaves the instance stopped', () => {
  assert.deepEqual(
    [0, 1, 2, 3].map((count) => restartsAfter('on-failure:2', 'failure', count)),
    [true, true, false, false],
  );
  assert.equal(restartsAfter('on-failure', 'failure', 1000), true);
});

test('what watch says when it leaves an instance stopped', () => {
  assert.equal(
    leftStopped('app-0', 'app', 'no', 'poweroff'),
    'app-0: its guest powered off; restart: no, so watch leaves it stopped (holos start app, or holos up, starts it)',
  );
  assert.match(
    leftStopped('app-0', 'app', 'on-failure', 'poweroff'),
    /^app-0: its guest powered off; restart: on-failure, so/,
  );
  assert.match(
    leftStopped('app-0', 'app', 'on-failure:3', 'failure'),
    /^app-0: it stopped \(QEMU exited or the guest panicked\); restart: on-failure:3, its restarts spent, so watch/,
  );
});
