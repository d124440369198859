import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UserError } from '../src/errors.js';
import { Backoff, Coalescer } from '../src/reconcile/queue.js';

// watch's work queue on its own, with a clock the test moves.

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

const ok = { status: 'ok' } as const;
const failed = (error = new Error('QEMU exited at once')) =>
  ({ status: 'failed', error, terminal: error instanceof UserError }) as const;

test('Coalescer: kicks during a pass make exactly one more pass', async () => {
  let passes = 0;
  let release!: () => void;
  const coalescer = new Coalescer(async () => {
    passes++;
    if (passes === 1) await new Promise<void>((resolve) => (release = resolve));
  });
  coalescer.kick();
  await Promise.resolve();
  for (let i = 0; i < 5; i++) coalescer.kick();
  release();
  await coalescer.idle();
  assert.equal(passes, 2);
  coalescer.kick();
  await coalescer.idle();
  assert.equal(passes, 3);
});

test('Backoff: failures double the delay from 1s up to 5m; holds until it is over', () => {
  const c = clock();
  const backoff = new Backoff({ now: c.now });
  assert.equal(backoff.holds('web-0', 'w'), false);
  const delays: number[] = [];
  for (let i = 0; i < 12; i++) {
    backoff.record('web-0', failed(), 'w', true);
    delays.push(backoff.remainingMs('web-0'));
  }
  assert.deepEqual(
    delays,
    [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300].map((s) => s * 1000),
  );
  assert.equal(backoff.holds('web-0', 'w'), true);
  assert.equal(backoff.nextWakeMs(), 300_000);
  c.advance(300_000);
  assert.equal(backoff.holds('web-0', 'w'), false);
  assert.equal(backoff.nextWakeMs(), undefined);
});

test('Backoff: a VM started again soon after the last start is flapping; one that stayed up starts over', () => {
  const c = clock();
  const backoff = new Backoff({ now: c.now });
  backoff.record('db-0', ok, 'w', true);
  assert.equal(backoff.remainingMs('db-0'), 0, 'a first start costs nothing');
  c.advance(5_000);
  backoff.record('db-0', ok, 'w', true);
  assert.equal(backoff.remainingMs('db-0'), 1_000, 'back within 30s: flapping');
  c.advance(5_000);
  backoff.record('db-0', ok, 'w', true);
  assert.equal(backoff.remainingMs('db-0'), 2_000);
  c.advance(31_000);
  backoff.record('db-0', ok, 'w', true);
  assert.equal(backoff.remainingMs('db-0'), 0, 'up 30s or more: stable, the backoff resets');
  // Passes that did not start the VM, and held instances, change nothing.
  backoff.record('db-0', ok, 'w', false);
  backoff.record('db-0', { status: 'held', reason: 'not started: db did not come up' }, 'w', true);
  assert.equal(backoff.remainingMs('db-0'), 0);
});

test('Backoff: a terminal error holds the instance until its world changes, without a timer', () => {
  const c = clock();
  const backoff = new Backoff({ now: c.now });
  const portInUse = failed(
    new UserError('host port 127.0.0.1:8080/tcp is in use; free it or change ports: in the file'),
  );
  backoff.record('web-0', portInUse, 'world 1', true);
  assert.match(backoff.terminal('web-0')!, /is in use/);
  c.advance(24 * 3_600_000);
  assert.equal(backoff.holds('web-0', 'world 1'), true, 'not retried while nothing changed');
  assert.equal(backoff.nextWakeMs(), undefined, 'and no timer wakes it');
  assert.equal(backoff.holds('web-0', 'world 2'), false, 'the file or the host changed: tried again at once');
  assert.equal(backoff.terminal('web-0'), undefined);
  assert.equal(backoff.holds('web-0', 'world 2'), false);
  // Others are not held back by it.
  assert.equal(backoff.holds('web-1', 'world 1'), false);
});
