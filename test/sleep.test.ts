import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { test } from 'node:test';
import { sleep } from '../src/util/sleep.js';

test('sleep: resolves after the time, and leaves no listener on the signal', async () => {
  const controller = new AbortController();
  for (let i = 0; i < 50; i++) await sleep(1, controller.signal);
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0);
});

test('sleep: rejects with the reason when the signal aborts, at once if it already has', async () => {
  const controller = new AbortController();
  const pending = sleep(60_000, controller.signal);
  controller.abort(new Error('gave up'));
  await assert.rejects(pending, /gave up/);
  await assert.rejects(sleep(1, controller.signal), /gave up/);
  await assert.rejects(sleep(60_000, AbortSignal.timeout(1)), { name: 'TimeoutError' });
});
