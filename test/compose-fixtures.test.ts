import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { toConfig } from '../src/compose/config.js';
import { join } from 'node:path';
import { test } from 'node:test';
import { validateComposeFile } from '../src/compose/load.js';
import { resolveProject } from '../src/compose/resolve.js';

// Every fixture states what it must produce: valid files resolve, and each invalid file lists
// its errors as `# error: LINE:COL path: message-prefix`, all of them, in file order.

const root = join(import.meta.dirname, '..', 'fixtures', 'compose');
const yamlIn = (dir: string) =>
  readdirSync(join(root, dir))
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();

for (const name of yamlIn('valid')) {
  test(`valid fixture ${name}`, () => {
    const result = validateComposeFile(join(root, 'valid', name));
    assert.ok(result.ok, result.ok ? '' : result.problems.join('\n'));
    const project = resolveProject(result.loaded);
    assert.equal(project.services.length, Object.keys(result.loaded.compose.services).length);
    // `holos config` round-trips: its output is a valid file of the same project.
    const printed = stringify(toConfig(project));
    const again = join(root, 'valid', `.roundtrip-${name}`);
    writeFileSync(again, printed);
    try {
      const second = validateComposeFile(again);
      assert.ok(second.ok, second.ok ? '' : `config of ${name}:\n${second.problems.join('\n')}`);
      const json = (value: unknown) => JSON.parse(JSON.stringify(value)) as unknown;
      assert.deepEqual(json(toConfig(resolveProject(second.loaded))), json(toConfig(project)));
    } finally {
      rmSync(again);
    }
  });
}

for (const name of yamlIn('invalid')) {
  test(`invalid fixture ${name}`, () => {
    const file = join(root, 'invalid', name);
    const expected = [...readFileSync(file, 'utf8').matchAll(/^# error: (.*)$/gm)].map((m) => m[1]!.trim());
    assert.ok(expected.length > 0, `${name} states no expected error`);
    const result = validateComposeFile(file);
    assert.equal(result.ok, false, `${name} was accepted`);
    const actual = result.ok
      ? []
      : result.problems.map((line) => line.slice(line.indexOf(name) + name.length + 1).trim());
    assert.equal(
      actual.length,
      expected.length,
      `expected:\n${expected.join('\n')}\nactual:\n${actual.join('\n')}`,
    );
    expected.forEach((want, i) => {
      // `5:9 path: message` is written `5:9: path: message` by validate.
      const normalised = want.replace(/^(\d+:\d+) /, '$1: ');
      assert.ok(
        actual[i]!.startsWith(normalised),
        `error ${i + 1}:\n  expected ${normalised}\n  actual   ${actual[i]}`,
      );
    });
  });
}

const examples = join(import.meta.dirname, '..', 'examples');
for (const name of readdirSync(examples, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)) {
  test(`example ${name} is valid`, () => {
    const result = validateComposeFile(join(examples, name, 'holos.yaml'));
    // examples/demo runs the test image, which scripts/demo.sh links in as disk.qcow2: until
    // then, the missing image must be its only problem.
    const problems = result.ok
      ? []
      : result.problems.filter((p) => !(name === 'demo' && p.includes('disk.qcow2')));
    assert.deepEqual(problems, []);
  });
}
