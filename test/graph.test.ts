import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startLevels, startOrder } from '../src/compose/graph.js';

const graph = (edges: Record<string, string[]>) => new Map(Object.entries(edges));

test('start levels: dependencies first, parallel within a level, sorted', () => {
  assert.deepEqual(
    startLevels(graph({ web: ['db', 'cache'], db: [], cache: [], worker: ['db'], lb: ['web'] })),
    [['cache', 'db'], ['web', 'worker'], ['lb']],
  );
  assert.deepEqual(startOrder(graph({ b: [], a: [] })), ['a', 'b']);
});

test('a cycle is named as a closed walk from its first service', () => {
  assert.deepEqual(startLevels(graph({ web: ['api'], api: ['db'], db: ['web'], other: [] })), {
    cycle: ['api', 'db', 'web', 'api'],
  });
  assert.deepEqual(startLevels(graph({ a: ['b'], b: ['a'] })), { cycle: ['a', 'b', 'a'] });
});
