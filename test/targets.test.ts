import assert from 'node:assert/strict';
import { test } from 'node:test';
import { targetsFor } from '../src/reconcile/targets.js';

// The verb → target table of DESIGN.md §1, line by line: `up`/`apply` → running; `start [svc]`
// → running, existing instances only; `stop [svc]` → stopped; `down` → absent; `plan` → what up
// would do; `watch` → running, except what the user stopped.

const services = ['db', 'web'];

test('up, apply and plan: every service running; instances the file no longer names go', () => {
  for (const verb of ['up', 'apply', 'plan'] as const)
    assert.deepEqual(
      targetsFor(verb, services),
      { services: { db: 'running', web: 'running' }, strays: 'absent' },
      verb,
    );
});

test('start [svc]: the named services (default all) running, existing instances only; strays alone', () => {
  assert.deepEqual(targetsFor('start', services), {
    services: { db: 'running', web: 'running' },
    existingOnly: true,
  });
  assert.deepEqual(targetsFor('start', services, { named: ['web'] }), {
    services: { web: 'running' },
    existingOnly: true,
  });
});

test('stop [svc]: the named services (default all) stopped; strays stopped only when none is named', () => {
  assert.deepEqual(targetsFor('stop', services), {
    services: { db: 'stopped', web: 'stopped' },
    strays: 'stopped',
  });
  assert.deepEqual(targetsFor('stop', services, { named: ['db'] }), { services: { db: 'stopped' } });
});

test('down: every service and stray absent; --volumes removes the volumes too', () => {
  const down = { services: { db: 'absent', web: 'absent' }, strays: 'absent' } as const;
  assert.deepEqual(targetsFor('down', services), { ...down, removeVolumes: false });
  assert.deepEqual(targetsFor('down', services, { volumes: true }), { ...down, removeVolumes: true });
  // down <project>, without the file: no services, everything on disk is a stray.
  assert.deepEqual(targetsFor('down', []), { services: {}, strays: 'absent', removeVolumes: false });
});

test('watch [svc]: running, except what holos stop stopped; strays go only for the whole project', () => {
  assert.deepEqual(targetsFor('watch', services), {
    services: { db: 'running', web: 'running' },
    strays: 'absent',
  });
  assert.deepEqual(targetsFor('watch', services, { stopped: ['web'] }), {
    services: { db: 'running' },
    strays: 'absent',
  });
  assert.deepEqual(targetsFor('watch', services, { named: ['web'], stopped: ['db'] }), {
    services: { web: 'running' },
  });
});
