import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import {
  caseDir,
  editedFixture,
  lineViolations,
  mutatedFixture,
  randomText,
} from '../bench/validate-soak.js';
import { UserError } from '../src/errors.js';
import { validateComposeFile } from '../src/compose/load.js';
import type { Limits } from '../src/compose/source.js';

// Hostile files must always come back as "valid" or as clean problem lines: never an exception
// but a UserError, never a stack trace or a hang, and every line `file:line:col: message` (or
// `file: message` for the whole file), with no raw control character, no line past the cap and
// none printed twice. The generators live in bench/validate-soak.ts, which runs 10,000 of them.

const workDir = caseDir('holos-prop-');
after(() => rmSync(workDir, { recursive: true, force: true }));

let count = 0;
function checkValidate(content: Buffer, limits?: Partial<Limits>): void {
  const file = join(workDir, `case-${count++}.yaml`);
  writeFileSync(file, content);
  try {
    const result = validateComposeFile(file, { limits });
    if (!result.ok) assert.deepEqual(lineViolations(file, result.problems), [], result.problems.join('\n'));
  } catch (error) {
    assert.ok(error instanceof UserError, String(error));
  }
}

test('validate survives mutated fixtures with a clean result', () => {
  fc.assert(
    fc.property(mutatedFixture, (content) => checkValidate(content)),
    { numRuns: 400 },
  );
});

test('validate survives random text', () => {
  fc.assert(
    fc.property(randomText, (content) => checkValidate(content)),
    { numRuns: 300 },
  );
});

// Limits a tenth of the defaults or less, so that the cases that pass them (deep nesting, many
// keys, alias bombs) are cheap to refuse; the rules do not depend on the values.
const small: Partial<Limits> = { maxBytes: 2 ** 18, maxTokens: 10_000, maxNodes: 10_000, maxAliases: 100 };

test('validate survives hostile edits: bytes, indentation, depth, many keys, long values, aliases', () => {
  fc.assert(
    fc.property(editedFixture, (content) => checkValidate(content, small)),
    { numRuns: 300 },
  );
});
