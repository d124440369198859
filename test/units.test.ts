import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  formatDuration,
  formatSize,
  maxDuration,
  maxSize,
  parseDuration,
  parseSize,
} from '../src/compose/units.js';

test('durations follow Go: units, compound values, a bare 0', () => {
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('1m30s'), 90_000);
  assert.equal(parseDuration('1.5h'), 5_400_000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('2h45m'), 9_900_000);
  assert.equal(parseDuration('0'), 0);
  assert.equal(parseDuration('1500us'), 1.5);
});

test('durations without a unit, negative or malformed are errors', () => {
  for (const bad of ['30', '', 'soon', '1d', '1M', 's', '1m30', '-5s', '1.2.3s'])
    assert.equal(typeof parseDuration(bad), 'string', bad);
  assert.match(String(parseDuration('-5s')), /negative/);
});

test('durations format back to the shortest Go text', () => {
  assert.equal(formatDuration(90_000), '1m30s');
  assert.equal(formatDuration(30_000), '30s');
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatDuration(500), '500ms');
  assert.equal(formatDuration(3_600_000), '1h');
  assert.equal(formatDuration(61_500), '1m1.5s');
  for (const text of ['1m30s', '2h45m', '10s', '250ms'])
    assert.equal(formatDuration(parseDuration(text) as number), text);
});

test('sizes are binary like qemu-img', () => {
  assert.equal(parseSize('512M'), 512 * 2 ** 20);
  assert.equal(parseSize('20G'), 20 * 2 ** 30);
  assert.equal(parseSize('20g'), 20 * 2 ** 30);
  assert.equal(parseSize('10GiB'), 10 * 2 ** 30);
  assert.equal(parseSize('2GB'), 2 * 2 ** 30);
  assert.equal(parseSize('1.5T'), 1.5 * 2 ** 40);
  assert.equal(parseSize('4096'), 4096);
  for (const bad of ['', 'lots', '10X', '-1G', 'G']) assert.equal(typeof parseSize(bad), 'string', bad);
  assert.equal(formatSize(20 * 2 ** 30), '20G');
  assert.equal(formatSize(1536 * 2 ** 20), '1536M');
  assert.equal(formatSize(1000), '1000');
});

test('durations are bounded: ten years at most, never Infinity', () => {
  assert.equal(parseDuration('87600h'), maxDuration);
  assert.match(
    String(parseDuration('87601h')),
    /^duration "87601h" is too long; the most is 87600h \(10 years\)$/,
  );
  // 400 digits are Infinity as a double: refused, not carried into `holos config` as "Infinityh".
  assert.match(String(parseDuration(`1${'0'.repeat(400)}s`)), /is too long/);
  assert.match(String(parseDuration(`${'9'.repeat(20)}h1s`)), /is too long/);
  // Many parts are read in one pass (a sticky expression, not a slice per part).
  assert.equal(parseDuration('1s'.repeat(100_000)), 100_000_000);
});

test('durations never format as Infinity or NaN', () => {
  for (const ms of [Infinity, -Infinity, NaN]) assert.equal(formatDuration(ms), 'unknown');
  assert.equal(formatDuration(-90_000), '-1m30s');
  assert.equal(formatDuration(maxDuration), '87600h');
});

test('sizes are bounded at 1P', () => {
  assert.equal(parseSize('1P'), maxSize);
  assert.equal(parseSize('1024T'), maxSize);
  for (const big of ['2P', '1025T', `${'9'.repeat(400)}`, `1${'0'.repeat(400)}G`])
    assert.match(String(parseSize(big)), /is too large; the most is 1024T$/, big);
});

test('a value in an error is quoted, escaped and cut', () => {
  assert.equal(
    parseDuration('soon\x1b'),
    'invalid duration "soon\\x1b": use a number with a unit, such as 30s, 1m30s or 500ms',
  );
  assert.match(String(parseSize('x'.repeat(5000))), /^invalid size "x{60}…" \(5000 characters\): /);
});
