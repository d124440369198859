import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';

// The e2e files run in two lanes (scripts/e2e-lanes.sh): one left out of both would never run.
test('every e2e file is in exactly one lane of package.json', () => {
  const scripts = (
    JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      scripts: Record<string, string>;
    }
  ).scripts;
  const lanes = ['test:e2e:stacks', 'test:e2e:single'].flatMap((lane) =>
    (scripts[lane] ?? '').split(' ').filter((word) => word.startsWith('test/e2e/')),
  );
  const files = readdirSync(new URL('./e2e/', import.meta.url))
    .filter((name) => name.endsWith('.test.ts'))
    .map((name) => `test/e2e/${name}`);
  assert.deepEqual([...lanes].sort(), files.sort());
  assert.equal(new Set(lanes).size, lanes.length, 'no file in two lanes');
  assert.match(scripts['test:e2e'] ?? '', /scripts\/e2e-lanes\.sh/);
});
