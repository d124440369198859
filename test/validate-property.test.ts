import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { parse, stringify } from 'yaml';
import { validateComposeFile } from '../src/compose/load.js';

// Mutated valid files must always come back as "valid" or as clean problem lines: never an
// exception, never a stack trace, never a hang.

const validDir = join(import.meta.dirname, '..', 'fixtures', 'compose', 'valid');
const fixtures = readdirSync(validDir)
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => parse(readFileSync(join(validDir, f), 'utf8'), { merge: true }) as unknown);

const workDir = mkdtempSync(join(tmpdir(), 'holos-prop-'));
after(() => rmSync(workDir, { recursive: true, force: true }));
for (const f of ['base.qcow2', 'postgres-cloud.qcow2', 'Dockerfile'])
  copyFileSync(join(validDir, f), join(workDir, f));

type Tree = unknown;
const anyValue = fc.oneof(
  fc.string(),
  fc.integer({ min: -100000, max: 100000 }),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constantFrom(
    '8080:80',
    '0:0',
    '../x:/y:ro',
    '1m',
    'x-a',
    '01:00.0',
    '9999999999999999999',
    '-1',
    'ubuntu:noble',
  ),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }),
);

/** All paths to nodes inside a tree. */
function paths(tree: Tree, prefix: (string | number)[] = []): (string | number)[][] {
  if (tree === null || typeof tree !== 'object') return [prefix];
  const entries = Array.isArray(tree) ? tree.map((v, i) => [i, v] as const) : Object.entries(tree);
  return [prefix, ...entries.flatMap(([k, v]) => paths(v, [...prefix, k]))];
}

function mutate(tree: Tree, path: (string | number)[], kind: number, value: unknown, key: string): Tree {
  if (path.length === 0) {
    if (kind === 0) return value;
    if (tree && typeof tree === 'object' && !Array.isArray(tree)) return { ...tree, [key]: value };
    return value;
  }
  const [head, ...rest] = path;
  const copy = (Array.isArray(tree) ? [...(tree as unknown[])] : { ...(tree as object) }) as Record<
    string | number,
    unknown
  >;
  if (rest.length === 0 && kind === 1) delete copy[head!];
  else copy[head!] = mutate(copy[head!], rest, kind, value, key);
  return copy;
}

test('validate survives mutated fixtures with a clean result', () => {
  let count = 0;
  fc.assert(
    fc.property(
      fc.nat(fixtures.length - 1),
      fc.nat(),
      fc.nat(2),
      anyValue,
      fc.constantFrom(
        'image',
        'portz',
        'x-ext',
        'replicas',
        'depends_on',
        'vm',
        'healthcheck',
        'services',
        'volumes',
      ),
      (which, pick, kind, value, key) => {
        const tree = fixtures[which];
        const all = paths(tree);
        const mutated = mutate(tree, all[pick % all.length]!, kind, value, key);
        const file = join(workDir, `case-${count++}.yaml`);
        writeFileSync(file, stringify(mutated));
        const result = validateComposeFile(file);
        if (!result.ok) {
          assert.ok(result.problems.length > 0);
          for (const line of result.problems) {
            assert.match(line, /^case-\d+\.yaml|^\/.*case-\d+\.yaml/);
            assert.doesNotMatch(line, /\n|\s+at \S+ \(/);
          }
        }
      },
    ),
    { numRuns: 400 },
  );
});

test('validate survives random text', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (text) => {
      const file = join(workDir, 'random.yaml');
      writeFileSync(file, text);
      const result = validateComposeFile(file);
      if (!result.ok) assert.ok(result.problems.every((l) => !l.includes('\n')));
    }),
    { numRuns: 300 },
  );
});
