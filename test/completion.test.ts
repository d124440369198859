import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { shellQuote } from '../src/util/shell.js';
import { holosArgs, runCli } from './support/cli.js';

// holos completion: the bash script, sourced in a real bash, completes verbs, flags and the
// project's names through `holos __complete`; the zsh and fish scripts are checked by their
// shells when the host has them.

test('completion in a real bash: verbs, flags, names of the project here, nothing after a value flag', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'holos-complete-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // `holos` on PATH, as an installed one would be: this checkout's.
  writeFileSync(
    join(dir, 'holos'),
    `#!/bin/sh\nexec ${[process.execPath, ...holosArgs].map(shellQuote).join(' ')} "$@"\n`,
  );
  chmodSync(join(dir, 'holos'), 0o755);
  writeFileSync(join(dir, 'base.qcow2'), '');
  writeFileSync(
    join(dir, 'holos.yaml'),
    'name: shop\nservices:\n  db:\n    image: ./base.qcow2\n  web:\n    image: ./base.qcow2\n    replicas: 2\n',
  );
  const complete = (...words: string[]) =>
    execFileSync(
      'bash',
      [
        '-c',
        `source <(holos completion bash); COMP_WORDS=(holos ${words.map((w) => shellQuote(w)).join(' ')}); COMP_CWORD=${words.length}; _holos; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ],
      {
        cwd: dir,
        env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, HOLOS_FILE: '' },
        encoding: 'utf8',
      },
    )
      .split('\n')
      .filter((line) => line !== '');
  assert.deepEqual(complete('st'), ['start', 'stop']);
  assert.deepEqual(complete('exec', ''), ['db', 'db-0', 'web', 'web-0', 'web-1']);
  assert.deepEqual(complete('logs', '-f', 'we'), ['web', 'web-0', 'web-1']);
  assert.deepEqual(complete('up', '--dr'), ['--dry-run']);
  assert.ok(complete('--st').includes('--state-dir'), 'the global flags');
  assert.deepEqual(complete('--state-dir', ''), [], "a flag's value: the shell's own (files)");
  assert.deepEqual(complete('export', 'ku'), ['kubevirt']);
  assert.ok(!complete('').includes('__complete'), 'the hidden verb is not offered');
});

test('completion zsh and fish: each parses in its shell (where installed); another shell is one line', async () => {
  for (const [shell, check] of [
    ['zsh', ['-n']],
    ['fish', ['--no-execute']],
  ] as const) {
    const script = await runCli(['completion', shell]);
    assert.equal(script.code, 0, script.stderr);
    assert.match(script.stdout, /holos __complete --/);
    try {
      execFileSync(shell, [...check], { input: script.stdout });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      console.error(`# ${shell} is not installed here: its script is checked for the call only`);
    }
  }
  const bad = await runCli(['completion', 'tcsh']);
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr, 'holos: completion tcsh: use bash, zsh, fish\n');
});
