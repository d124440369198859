// The lines `up --wait` prints for phases (cli/progress.ts): elsewhere than a terminal one line
// per change; on a terminal a live line per instance, redrawn by log-update with a running
// clock, and a line that stays once the instance got where it was going.

import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { HolosEvent } from '../src/events.js';
import { phaseLine, progressPrinter } from '../src/cli/progress.js';

type PhaseChange = Extract<HolosEvent, { type: 'phase' }>;
const since = '2026-12-02T00:00:00.000Z';
const change = (instance: string, phase: string, elapsed_ms: number, errors?: string[]): PhaseChange => ({
  type: 'phase',
  instance,
  phase,
  elapsed_ms,
  since,
  ...(errors && { errors }),
});

test('phaseLine: on the way with its time, at the end with the time it took and the reason', () => {
  assert.equal(phaseLine(change('web-0', 'booting', 0)), 'web-0: booting, 0s');
  assert.equal(phaseLine(change('web-0', 'provisioning', 61_500)), 'web-0: provisioning, 1m1s');
  assert.equal(phaseLine(change('web-0', 'ready', 97_000)), 'web-0: ready after 1m37s');
  assert.equal(
    phaseLine(change('bad-0', 'degraded', 9_000, ['modules-final: scripts-user failed: x', 'y'])),
    'bad-0: degraded after 9s: modules-final: scripts-user failed: x; y',
  );
  assert.equal(phaseLine(change('web-0', 'booting', 0), Date.parse(since) + 5_000), 'web-0: booting, 5s');
});

/** A stream as a terminal of `rows` rows looks to the printer, keeping what is written. */
function terminal(tty: boolean, rows = 24) {
  const stream = Object.assign(new PassThrough(), { isTTY: tty, rows, columns: 100 });
  let written = '';
  stream.on('data', (chunk: Buffer) => (written += chunk.toString()));
  return { stream: stream as unknown as NodeJS.WriteStream, text: () => written };
}

test('without a terminal (or one of no size): a plain line per change', () => {
  for (const out of [terminal(false), terminal(true, 0)]) {
    const printer = progressPrinter(out.stream);
    printer.phase(change('web-0', 'booting', 0));
    printer.phase(change('web-0', 'ready', 3_000));
    assert.equal(out.text(), 'web-0: booting, 0s\nweb-0: ready after 3s\n');
  }
});

test('on a terminal: live lines redrawn in place, and the final line stays', async () => {
  const out = terminal(true);
  const printer = progressPrinter(out.stream);
  printer.phase({ ...change('web-0', 'booting', 0), since: new Date().toISOString() });
  printer.phase({ ...change('web-1', 'provisioning', 0), since: new Date().toISOString() });
  // log-update loads with the first live line.
  while (!out.text().includes('web-1: provisioning, 0s')) await sleep(10);
  assert.match(out.text(), /web-0: booting, 0s/);
  printer.phase(change('web-1', 'ready', 42_000));
  printer.line('a line of another event');
  const text = out.text();
  assert.ok(text.includes('\u001b[2K'), 'the live block is erased before a line that stays');
  assert.ok(text.indexOf('web-1: ready after 42s\n') < text.indexOf('a line of another event\n'));
  assert.ok(
    text.lastIndexOf('web-0: booting') > text.indexOf('a line of another event'),
    'web-0 is live below',
  );
});
