import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { UserError } from '../src/errors.js';
import { checkIdentity, compareFiles } from '../src/state/identity.js';
import { forgetProject, projectsIn } from '../src/state/project.js';
import { projectLayout } from '../src/state/layout.js';

// Project identity on real files: one name in a state dir is managed from one compose file.

const root = mkdtempSync(join(tmpdir(), 'holos-identity-'));
after(() => rmSync(root, { recursive: true, force: true }));

function file(path: string): string {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, 'services: {}\n');
  return path;
}

const x = file(join(root, 'x', 'app', 'holos.yaml'));
const y = file(join(root, 'y', 'app', 'holos.yaml'));
const record = { name: 'app', file: x };
const options = { compare: compareFiles };

test('its own file, a new project, or the same file by another path: nothing to say', () => {
  assert.equal(checkIdentity(record, x, options), undefined);
  assert.equal(checkIdentity(undefined, y, options), undefined);
  assert.equal(checkIdentity({ name: 'app', file: '' }, y, options), undefined);
  const link = join(root, 'link');
  symlinkSync(join(root, 'x'), link);
  assert.equal(checkIdentity(record, join(link, 'app', 'holos.yaml'), options), undefined);
});

test('another checkout of the same name is refused, naming both files and the ways out', () => {
  assert.throws(
    () => checkIdentity(record, y, options),
    (error: unknown) =>
      error instanceof UserError &&
      error.message ===
        `project app is managed from ${x}, not from ${y}: name this one with -p <name>, ` +
          `free the name with holos down -v in ${x}'s directory, or manage it from here with holos up --take-over`,
  );
  assert.equal(
    checkIdentity(record, y, { ...options, takeOver: true }),
    `project app is now managed from ${y} (it was ${x})`,
  );
});

test('a checkout that moved (its recorded file is gone) is adopted with a notice', () => {
  const gone = { name: 'app', file: join(root, 'old', 'app', 'holos.yaml') };
  assert.equal(
    checkIdentity(gone, y, options),
    `project app was managed from ${gone.file}, which is gone; adopting it from ${y}`,
  );
});

test('a project exists while anything of it does; down --volumes forgets it entirely', async () => {
  const stateDir = join(root, 'state');
  const layout = projectLayout(stateDir, 'kept');
  mkdirSync(layout.volumesDir, { recursive: true });
  writeFileSync(layout.volume('data'), '');
  mkdirSync(layout.sshDir, { recursive: true });
  mkdirSync(join(stateDir, 'projects'), { recursive: true });
  writeFileSync(layout.record, '{}');
  mkdirSync(join(stateDir, 'ssh', 'keys-only'), { recursive: true });
  assert.deepEqual(await projectsIn(stateDir), ['kept', 'keys-only']);

  // A plain down: the volume, keys and record stay, so the name stays taken.
  await forgetProject(layout, false);
  assert.deepEqual(await projectsIn(stateDir), ['kept', 'keys-only']);
  // --volumes with a volume the plan could not remove: nothing else goes either.
  await forgetProject(layout, true);
  assert.deepEqual(await projectsIn(stateDir), ['kept', 'keys-only']);
  rmSync(layout.volume('data'));
  await forgetProject(layout, true);
  assert.deepEqual(await projectsIn(stateDir), ['keys-only']);
});
