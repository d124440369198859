import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { composeDir } from './support/compose.js';

// What a verb that changes nothing must not load (issue #21): the HTTP client (undici: only a
// pull or the size of an image to pull needs it), the live progress line (log-update: only a
// download on a terminal), SSH (ssh2: a key made, a healthcheck probed), logging (pino: only
// with --log-level or --log-file) and the executors' process runner (execa: only a start).
// Each command runs from the sources, with a resolve hook that prints every module it loads.

const root = join(import.meta.dirname, '..');
const hook = `data:text/javascript,${encodeURIComponent(`
import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(
  'export async function resolve(s, c, next) { const r = await next(s, c); console.error("LOADED " + r.url); return r; }'));
`)}`;
const stateDir = mkdtempSync(join(tmpdir(), 'holos-lazy-'));
after(() => rmSync(stateDir, { recursive: true, force: true }));

/** The npm packages `holos <args>` loads, run in `cwd`. */
function packagesLoaded(cwd: string, ...args: string[]): Set<string> {
  const run = spawnSync(
    process.execPath,
    ['--import', import.meta.resolve('tsx'), '--import', hook, join(root, 'src', 'cli.ts'), ...args],
    { cwd, env: { ...process.env, HOLOS_STATE_DIR: stateDir }, encoding: 'utf8' },
  );
  assert.equal(run.status, 0, `holos ${args.join(' ')}: ${run.stderr}`);
  const urls = run.stderr.matchAll(/^LOADED file:\/\/\S*?\/node_modules\/((?:@[^/]+\/)?[^/]+)\//gm);
  return new Set([...urls].map((match) => match[1]!));
}

const onlyWhenNeeded = ['undici', 'log-update', 'ssh2', 'pino', 'execa'];

test('plan and ps of a project on a local image load no HTTP client, SSH, logger or process runner', () => {
  const dir = composeDir('name: lazy\nservices:\n  app:\n    image: ./base.qcow2\n    replicas: 2\n');
  for (const verb of [['plan'], ['ps'], ['up', '--dry-run']]) {
    const packages = packagesLoaded(dir, ...verb);
    assert.ok(
      packages.has('zod') && packages.has('yaml'),
      `the hook sees packages: ${[...packages].join(', ')}`,
    );
    assert.deepEqual(
      onlyWhenNeeded.filter((name) => packages.has(name)),
      [],
      `holos ${verb.join(' ')} loaded them`,
    );
  }
});
