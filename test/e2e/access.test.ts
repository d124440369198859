// Getting into a real VM (issue #6): one instance booted with `holos up` inside a network
// namespace, then exec (streams, exit status, stdin, an interactive PTY session driven through
// tmux), console attach and detach, logs and logs -f, ssh-config with OpenSSH, and a host key
// that does not match being refused. `holos down` at the end; the harness kills any leftover.
//
// The service says `image: debian:12`, and nothing is placed by hand: holos pulls the image
// from a distribution mirror (HOLOS_IMAGE_MIRROR) that serves the test image as debian:12,
// listening on 127.0.0.1 inside the namespace. On the same boot (no other guest is started):
// the pull is planned and done once, a no-op `up` asks the mirror nothing, `holos images`
// names the instance a cached file is the base of and `images rm` refuses to remove it, a
// newer upstream build pulled into the cache is noted by `plan` and only taken by
// `--pull always`, and after `down`, `images prune` empties the cache. examples/hello (the
// README's stack) is planned against the same mirror, not booted.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatBytes } from '../../src/compose/units.js';
import type { Stamped } from '../../src/events.js';
import type { CachedRow } from '../../src/cli/images.js';
import type { Plan } from '../../src/reconcile/plan.js';
import { projectLayout } from '../../src/state/layout.js';
import { fingerprintOfLine } from '../../src/ssh/session.js';
import { generateKeyPair } from '../../src/ssh/keys.js';
import { shellCommand } from '../../src/util/shell.js';
import {
  BOOT_TIMEOUT_MS,
  canUseNetns,
  e2eTest,
  markFailed,
  parseEvents,
  repoRoot,
  run,
  runHolosIn,
  runOk,
  startNetnsMirror,
  tempProject,
  withNetns,
  type Netns,
  type RunResult,
} from './harness.js';

const cli = join(repoRoot, 'dist', 'cli.js');
// Generous: other VMs may share this host's cores while this one boots under TCG.
const BOOT_WAIT_MS = 2 * BOOT_TIMEOUT_MS;
const bootWait = `${Math.ceil(BOOT_WAIT_MS / 1000)}s`;
/** The login user of debian:12 (the catalog's), which holos creates with the project key. */
const user = 'debian';

const actionList = (plan: Plan) => plan.actions.map((a) => `${a.id} ${a.verb}`);

/** Polls until `read()` matches, or fails after `timeoutMs` showing what it last read. */
async function waitFor(
  read: () => Promise<string> | string,
  pattern: RegExp,
  what: string,
  timeoutMs = 2 * 60_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await read();
    if (pattern.test(text)) return text;
    if (Date.now() > deadline)
      assert.fail(`${what}: no ${String(pattern)} within ${timeoutMs / 1000}s in:\n${text}`);
    await sleep(200);
  }
}

/** A tmux server of our own (its own socket), one session whose pane runs `command`. */
class Tmux {
  readonly socket = `holos-e2e-${process.pid}-${randomBytes(3).toString('hex')}`;

  private tmux(args: string[]): Promise<RunResult> {
    return run('tmux', ['-L', this.socket, ...args]);
  }

  async start(command: string, cwd: string): Promise<void> {
    const r = await this.tmux([
      'new-session',
      '-d',
      '-s',
      'main',
      '-x',
      '100',
      '-y',
      '30',
      '-c',
      cwd,
      command,
    ]);
    assert.equal(r.code, 0, r.stderr);
  }

  async keys(...keys: string[]): Promise<void> {
    const r = await this.tmux(['send-keys', '-t', 'main', ...keys]);
    assert.equal(r.code, 0, r.stderr);
  }

  async resize(cols: number, rows: number): Promise<void> {
    const r = await this.tmux(['resize-window', '-t', 'main', '-x', String(cols), '-y', String(rows)]);
    assert.equal(r.code, 0, r.stderr);
  }

  /** The pane with its scrollback, wrapped lines joined. */
  async screen(): Promise<string> {
    return (await this.tmux(['capture-pane', '-p', '-J', '-S', '-500', '-t', 'main'])).stdout;
  }

  waitFor(pattern: RegExp, what: string, timeoutMs?: number): Promise<string> {
    return waitFor(() => this.screen(), pattern, what, timeoutMs);
  }

  async kill(): Promise<void> {
    await this.tmux(['kill-server']);
  }
}

/** A shell command for a tmux pane: holos inside the namespace, then its exit status and the terminal's modes. */
function paneCommand(ns: Netns, env: Record<string, string>, holosArgs: string[]): string {
  const holos = shellCommand([
    'ip', 'netns', 'exec', ns.name, 'env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
    process.execPath, cli, ...holosArgs,
  ]); // prettier-ignore
  return `${holos}; echo "EXIT=$?"; stty -a; exec sleep 600`;
}

/** stty -a after holos ended: canonical mode and echo are back on. */
function assertCookedTerminal(screen: string): void {
  const modes = screen.slice(screen.lastIndexOf('EXIT='));
  assert.match(modes, /(^|\s)icanon(\s|$)/m, `terminal left in raw mode:\n${modes}`);
  assert.match(modes, /(^|\s)echo(\s|$)/m, `terminal left without echo:\n${modes}`);
}

e2eTest('access: exec, console, logs, ssh-config on a pulled debian:12 VM', async (t, env) => {
  if (!canUseNetns()) {
    if (process.env.CI === 'true') throw new Error('e2e: needs root and iproute2 for a network namespace');
    t.skip('needs root and iproute2 (a network namespace for the VM)');
    return;
  }
  const project = await tempProject(t);
  // A catalog name and nothing else: no image file anywhere in the project or the state dir.
  await project.write('holos.yaml', 'name: access\nservices:\n  app:\n    image: debian:12\n');
  const layout = projectLayout(project.stateDir, 'access');
  const imagesDir = join(project.stateDir, 'images');

  await withNetns(`holos-access-${process.pid}`, async (ns) => {
    // The test image, served as debian:12 at its upstream path with a SHA512SUMS beside it.
    const mirror = await startNetnsMirror(t, ns);
    const served = await mirror.serveAs('debian:12', env.image);
    const holosEnv = {
      ...project.env,
      HOLOS_ACCEL: process.env.HOLOS_ACCEL ?? 'tcg',
      HOLOS_IMAGE_MIRROR: mirror.url,
    };
    const holos = (args: string[], opts: { input?: string; timeoutMs?: number; cwd?: string } = {}) =>
      runHolosIn(ns, args, { cwd: project.dir, env: holosEnv, ...opts });
    const holosOk = async (args: string[], opts: { cwd?: string } = {}) => {
      const r = await holos(args, opts);
      assert.equal(r.code, 0, `holos ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr}`);
      return r;
    };
    const planOf = async (args: string[] = [], cwd?: string) =>
      JSON.parse((await holosOk(['plan', '--json', ...args], { ...(cwd && { cwd }) })).stdout) as Plan;
    const cached = async () =>
      (JSON.parse((await holosOk(['images', '--format', 'json'])).stdout) as { cached: CachedRow[] }).cached;
    /** The mirror's GETs of the debian:12 file: `full` or the Range asked. */
    const imageGets = async () =>
      (await mirror.requestsOf('debian:12')).image
        .filter((r) => r.method === 'GET')
        .map((r) => r.range ?? 'full');
    /** A subtest; a failure keeps the project directory and prints the serial log. */
    const step = (name: string, fn: (st: TestContext) => Promise<void>) =>
      t.test(name, async (st) => {
        try {
          await fn(st);
        } catch (error) {
          markFailed(t);
          throw error;
        }
      });

    await step('examples/hello (the README stack) plans a pull of debian:12 and its VM', async () => {
      const hello = join(repoRoot, 'examples', 'hello');
      const files = await readdir(hello);
      const plan = await planOf([], hello);
      const actions = actionList(plan);
      assert.ok(actions.includes('image:debian:12 pull'), `a pull of debian:12: ${actions.join(', ')}`);
      assert.ok(actions.includes('instance:web-0 create'), `web-0 is created: ${actions.join(', ')}`);
      const pull = plan.actions.find((a) => a.id === 'image:debian:12')!;
      // From the mirror, with the size it told (a HEAD): reached from inside the namespace.
      assert.ok(pull.reason.includes(`${mirror.url}/cloud.debian.org/`), `from the mirror: ${pull.reason}`);
      const size = formatBytes((await stat(env.image)).size);
      assert.ok(pull.reason.includes(` ${size} `), `the size of the file served (${size}): ${pull.reason}`);
      assert.deepEqual(await readdir(hello), files, 'plan writes nothing into examples/hello');
    });

    await step('the plan before up pulls debian:12; a plan downloads nothing', async () => {
      const actions = actionList(await planOf());
      assert.ok(actions.includes('image:debian:12 pull'), `a pull of debian:12: ${actions.join(', ')}`);
      assert.ok(actions.includes('instance:app-0 create'), `app-0 is created: ${actions.join(', ')}`);
      assert.deepEqual(await imageGets(), [], 'no GET of the image before up');
      assert.equal(existsSync(imagesDir), false, 'nothing in the cache before up');
    });

    const up = await holos(['up'], { timeoutMs: BOOT_TIMEOUT_MS });
    assert.equal(up.code, 0, up.stderr);
    try {
      await step('up pulled debian:12 from the mirror once, whole, and verified it', async () => {
        assert.deepEqual(await imageGets(), ['full'], 'one GET of the whole image');
        const { checksum } = await mirror.requestsOf('debian:12');
        assert.ok(
          checksum.some((r) => r.method === 'GET'),
          'SHA512SUMS was read from the mirror (the digest is verified against it)',
        );
        const rows = await cached();
        assert.deepEqual(
          rows.map((r) => [r.name, r.file, r.digest, r.current]),
          [['debian:12', 'debian-12.qcow2', served.digest, true]],
          'the pulled file, with the digest the mirror published',
        );
      });

      await step('exec waits for sshd, then stdout, stderr and the exit status pass through', async (st) => {
        const r = await holos(
          ['exec', '-w', bootWait, 'app-0', '--', 'sh', '-c', 'printf out; printf err >&2; exit 3'],
          { timeoutMs: BOOT_WAIT_MS + 60_000 },
        );
        st.diagnostic(`first exec stderr: ${JSON.stringify(r.stderr)}`);
        assert.equal(r.code, 3, r.stderr);
        assert.equal(r.stdout, 'out');
        // Right after up the guest is still booting: holos says what it waits for, on stderr.
        assert.match(r.stderr, /^holos: waiting up to \d+m\d*s? for sshd of app-0 on 127\.0\.0\.1:\d+ .*\n/);
        assert.match(r.stderr, /err$/);

        // The rest of the boot (cloud-init's last stage) first: under TCG on a busy host it can
        // hold sshd's banner past holos's 2s probe, and then even a ready guest gets the notice.
        const settled = await holos(['exec', 'app', '--', 'cloud-init', 'status', '--wait'], {
          timeoutMs: BOOT_WAIT_MS,
        });
        assert.equal(settled.code, 0, `cloud-init: ${settled.stdout}${settled.stderr}`);
        const quiet = await holos(['exec', 'app', '--', 'sh', '-c', 'echo out; echo err >&2']);
        assert.deepEqual([quiet.code, quiet.stdout, quiet.stderr], [0, 'out\n', 'err\n']);
        // Each word arrives as it is: no second round of shell parsing in the guest.
        const words = await holos([
          'exec',
          'app',
          '--',
          'printf',
          '[%s]',
          'a b',
          '$HOME',
          "it's",
          '; id',
          '',
        ]);
        assert.deepEqual([words.code, words.stdout], [0, "[a b][$HOME][it's][; id][]"]);
        assert.equal((await holos(['exec', 'app', '--', 'false'])).code, 1);
        const killed = await holos(['exec', 'app', '--', 'sh', '-c', 'kill -TERM $$']);
        assert.equal(killed.code, 143, 'killed by SIGTERM: 128 + 15');
        const scripted = await run('sh', [
          '-c',
          `${shellCommand(['ip', 'netns', 'exec', ns.name, process.execPath, cli, 'exec', 'app', '--', 'id', '-un'])} && echo ok`,
        ], { cwd: project.dir, env: holosEnv }); // prettier-ignore
        assert.deepEqual([scripted.code, scripted.stdout], [0, `${user}\nok\n`]);
        // A reader that goes away: holos ends like ssh killed by SIGPIPE (128 + 13), quietly.
        const piped = await run('bash', [
          '-c',
          `${shellCommand(['ip', 'netns', 'exec', ns.name, process.execPath, cli, 'exec', 'app', '--', 'seq', '1000000'])} | head -n 2; echo "status=\${PIPESTATUS[0]}"`,
        ], { cwd: project.dir, env: holosEnv }); // prettier-ignore
        assert.deepEqual([piped.stdout, piped.stderr], ['1\n2\nstatus=141\n', '']);
      });

      await step('exec forwards stdin, to its end', async () => {
        const r = await holos(['exec', 'app', '--', 'sh', '-c', 'tr a-z A-Z; echo done >&2'], {
          input: 'hello\nworld\n',
        });
        assert.deepEqual([r.code, r.stdout, r.stderr], [0, 'HELLO\nWORLD\n', 'done\n']);
        const big = 'x'.repeat(1024 * 1024 + 7);
        const counted = await holos(['exec', 'app', '--', 'wc', '-c'], { input: big });
        assert.deepEqual([counted.code, counted.stdout.trim()], [0, String(big.length)]);
        // -t: a PTY for the command even without a terminal here (the PTY turns \n into \r\n).
        const tty = await holos(['exec', '-t', 'app', '--', 'sh', '-c', 'tty; test -t 0 && test -t 1']);
        assert.equal(tty.code, 0, tty.stderr);
        assert.match(tty.stdout, /^\/dev\/pts\/\d+\r\n$/);
        // No command and no terminal: a shell reading its commands from stdin.
        const shell = await holos(['exec', 'app'], { input: 'echo "from $(hostname)"; exit 5\n' });
        assert.equal(shell.code, 5, shell.stderr);
        assert.match(shell.stdout, /from app-0\n$/);
      });

      await step('exec names the instances when the name is unknown', async () => {
        const r = await holos(['exec', 'nope', '--', 'true']);
        assert.deepEqual(
          [r.code, r.stdout, r.stderr],
          [1, '', 'holos: no instance or service nope in project access; instances: app-0 (running)\n'],
        );
      });

      const tmuxMissing = (await run('tmux', ['-V']).catch(() => undefined))?.code !== 0;

      await step(
        'exec: an interactive shell on a PTY (TERM, window size and resize), then exit',
        async (st) => {
          if (tmuxMissing) return st.skip('tmux is not installed');
          const tmux = new Tmux();
          try {
            await tmux.start(
              paneCommand(ns, { HOLOS_STATE_DIR: project.stateDir, TERM: 'xterm-256color' }, [
                'exec',
                'app-0',
              ]),
              project.dir,
            );
            await tmux.waitFor(new RegExp(`${user}@app-0:~\\$ *$`, 'm'), 'the shell prompt');
            await tmux.keys('echo "tty=$(tty) term=$TERM size=$(stty size)"', 'Enter');
            await tmux.waitFor(
              /^tty=\/dev\/pts\/\d+ term=xterm-256color size=30 100 *$/m,
              'a PTY with TERM and size',
            );
            await tmux.resize(120, 40);
            await tmux.keys('echo "resized=$(stty size)"', 'Enter');
            await tmux.waitFor(/^resized=40 120 *$/m, 'the new window size in the guest');
            // Ctrl-C goes to the guest (raw mode): it interrupts the remote command, not holos.
            await tmux.keys('echo "sleep$((1 + 1))"; sleep 300', 'Enter');
            await tmux.waitFor(/^sleep2 *$/m, 'the remote sleep to start');
            await tmux.keys('C-c');
            await tmux.keys('echo "still here"', 'Enter');
            await tmux.waitFor(/^still here *$/m, 'the session after Ctrl-C');
            await tmux.keys('exit 7', 'Enter');
            // Until stty's modes are on screen too: they follow the status a moment later.
            const screen = await tmux.waitFor(/^EXIT=7 *$[\s\S]*icanon/m, "the shell's exit status");
            assertCookedTerminal(screen);
          } finally {
            await tmux.kill();
          }
        },
      );

      await step('console: attach, type at the getty, Ctrl-] detaches and the VM runs on', async (st) => {
        if (tmuxMissing) return st.skip('tmux is not installed');
        const tmux = new Tmux();
        try {
          await tmux.start(
            paneCommand(ns, { HOLOS_STATE_DIR: project.stateDir }, ['console', 'app']),
            project.dir,
          );
          await tmux.waitFor(
            /connected to the serial console of app-0; press Ctrl-\] to detach/,
            'the attach message',
          );
          await tmux.waitFor(/app-0 login: *$/m, 'the getty prompt');
          await tmux.keys(user, 'Enter');
          await tmux.waitFor(/^Password: *$/m, 'the password prompt (input reaches the guest)');
          await tmux.keys('C-]');
          const screen = await tmux.waitFor(/^EXIT=0 *$[\s\S]*icanon/m, 'holos console to end');
          assert.match(screen, /holos: detached from the serial console of app-0\n/);
          assertCookedTerminal(screen);
        } finally {
          await tmux.kill();
        }
        const after = await holos(['exec', 'app', '--', 'true']);
        assert.equal(after.code, 0, after.stderr);
      });

      await step('logs: a service, one instance, -n; -f follows new output', async () => {
        const all = await holos(['logs', 'app']);
        assert.equal(all.code, 0, all.stderr);
        const lines = all.stdout.split('\n').slice(0, -1);
        assert.ok(lines.length > 20, `a boot's worth of lines, got ${lines.length}`);
        for (const line of lines) assert.ok(line.startsWith('app-0 | '), `prefixed: ${JSON.stringify(line)}`);
        assert.ok(
          lines.some((l) => l.includes('Linux version')),
          'the kernel banner',
        );
        assert.doesNotMatch(all.stdout, /\x1b\[3\dm\w+-\d \|/, 'no colour for a pipe'); // eslint-disable-line no-control-regex
        const everything = await holos(['logs']);
        assert.ok(everything.stdout.startsWith(all.stdout.slice(0, 2000)), 'no argument: every service');
        const three = await holos(['logs', '-n', '3', 'app-0']);
        assert.equal(three.stdout.split('\n').length, 4, three.stdout);

        const marker = `holos-marker-${randomBytes(4).toString('hex')}`;
        const follower = spawn(
          'ip',
          ['netns', 'exec', ns.name, process.execPath, cli, 'logs', '-f', '-n', '1', 'app'],
          {
            cwd: project.dir,
            env: holosEnv,
            stdio: ['ignore', 'pipe', 'pipe'],
          },
        );
        let followed = '';
        follower.stdout.setEncoding('utf8').on('data', (chunk: string) => (followed += chunk));
        follower.stderr.setEncoding('utf8').on('data', (chunk: string) => (followed += chunk));
        const exited = new Promise<number | null>((resolve) => follower.on('close', (code) => resolve(code)));
        try {
          // The last line of the log shows that logs -f has read what was there; then new output.
          await waitFor(() => followed, /^app-0 \| /m, 'logs -f to print the last line');
          const wrote = await holos([
            'exec', 'app', '--', 'sudo', 'sh', '-c', `echo ${marker} > /dev/ttyS0`,
          ]); // prettier-ignore
          assert.equal(wrote.code, 0, wrote.stderr);
          await waitFor(
            () => followed,
            new RegExp(`^app-0 \\| ${marker}$`, 'm'),
            'logs -f to print the new line',
          );
          assert.doesNotMatch(followed, /Linux version/, '-n 1: not the old lines');
        } finally {
          follower.kill('SIGINT');
        }
        assert.equal(await exited, 0, `logs -f ends quietly on Ctrl-C: ${followed}`);
      });

      await step(
        'ssh-config: OpenSSH logs in with the project key and checks the pinned host key',
        async () => {
          const r = await holos(['ssh-config']);
          assert.equal(r.code, 0, r.stderr);
          assert.match(r.stdout, /^Host app-0 app-0\.access$/m);
          const config = join(project.dir, 'ssh_config');
          await writeFile(config, r.stdout);
          assert.equal((await stat(join(layout.sshDir, 'known_hosts'))).mode & 0o777, 0o600);
          const ssh = await ns.exec('ssh', [
            '-F',
            config,
            '-o',
            'BatchMode=yes',
            'app-0',
            'echo',
            'via-openssh',
          ]);
          assert.deepEqual([ssh.code, ssh.stdout], [0, 'via-openssh\n'], ssh.stderr);
        },
      );

      await step('a guest whose host key is not the one holos gave it is refused', async () => {
        const applied = layout.instance('app-0').applied;
        const original = await readFile(applied, 'utf8');
        const record = JSON.parse(original) as { hostPublicKey: string };
        const impostor = generateKeyPair('not the guest').publicKey;
        try {
          await writeFile(applied, JSON.stringify({ ...record, hostPublicKey: impostor }));
          const r = await holos(['exec', '-w', '0', 'app', '--', 'echo', 'should not run']);
          assert.equal(r.code, 255, r.stderr);
          assert.equal(r.stdout, '');
          assert.match(
            r.stderr,
            new RegExp(
              `^holos: app-0: host key mismatch on 127\\.0\\.0\\.1:\\d+: the guest presented ${escape(fingerprintOfLine(record.hostPublicKey))}, but holos gave it ${escape(fingerprintOfLine(impostor))} .*refusing to connect`,
            ),
          );
          // OpenSSH through ssh-config refuses it as well (StrictHostKeyChecking yes).
          const config = join(project.dir, 'ssh_config');
          await writeFile(config, (await holos(['ssh-config'])).stdout);
          const ssh = await ns.exec('ssh', ['-F', config, '-o', 'BatchMode=yes', 'app-0', 'true']);
          assert.equal(ssh.code, 255);
          assert.match(ssh.stderr, /Host key verification failed/);
        } finally {
          await writeFile(applied, original);
        }
        const back = await holos(['exec', '-w', '0', 'app', '--', 'echo', 'trusted again']);
        assert.deepEqual([back.code, back.stdout], [0, 'trusted again\n'], back.stderr);
      });

      await step('a no-op up asks the mirror nothing: the cached image is trusted as it is', async (st) => {
        const before = (await mirror.requests()).length;
        // Under strace where there is one: the up must not even open the cached file (no hash).
        const tracing = (await run('strace', ['-V']).catch(() => undefined))?.code === 0;
        const trace = join(project.stateDir, '..', 'noop-up.strace');
        const again = tracing
          ? await ns.exec(
              'strace',
              ['-f', '-qq', '-e', 'trace=open,openat', '-o', trace, process.execPath, cli, 'up', '--json'],
              { cwd: project.dir, env: holosEnv },
            )
          : await holos(['up', '--json']);
        assert.equal(again.code, 0, `the second up: ${again.stderr}`);
        const plans = parseEvents(again.stdout).filter(
          (e): e is Extract<Stamped, { type: 'plan' }> => e.type === 'plan',
        );
        assert.deepEqual(
          plans.map((e) => e.actions),
          [0],
          `the second up has nothing to do: ${again.stdout}`,
        );
        assert.deepEqual(
          (await mirror.requests()).slice(before),
          [],
          'no request at all: not for debian:12, not for its SHA512SUMS, not even a HEAD',
        );
        if (!tracing) return st.diagnostic('strace is not installed: not checked that the image is not read');
        const lines = (await readFile(trace, 'utf8')).split('\n');
        assert.ok(
          lines.some((line) => line.includes(`"${join(project.dir, 'holos.yaml')}"`)),
          'the trace saw holos open its compose file',
        );
        const opened = lines.filter((line) => line.includes(`${imagesDir}/`) && line.includes('.qcow2"'));
        assert.deepEqual(opened, [], 'the no-op up opened no cached image file: nothing hashed again');
      });

      await step('images names the instance on the cached file; images rm refuses, naming it', async () => {
        const rows = await cached();
        assert.deepEqual(
          rows.map((r) => [r.file, r.used_by]),
          [['debian-12.qcow2', ['access/app-0']]],
          'the root disk of app-0 is made on the pulled file',
        );
        const rm = await holos(['images', 'rm', 'debian:12']);
        assert.notEqual(rm.code, 0, `images rm of a file in use must fail: ${rm.stdout}`);
        assert.equal(rm.stdout, '');
        // One line, naming the instance; no stack trace.
        assert.match(rm.stderr, /^holos: [^\n]*\baccess\/app-0\b[^\n]*\n$/);
        assert.equal(existsSync(join(imagesDir, 'debian-12.qcow2')), true, 'the file is still there');
        assert.deepEqual(
          (await cached()).map((r) => r.file),
          ['debian-12.qcow2'],
        );
      });

      await step(
        'a newer upstream debian:12: pulled as a second version, noted by plan, taken only by --pull always',
        async (st) => {
          const newer = join(project.stateDir, '..', 'newer.qcow2');
          await runOk(env.qemu.img, ['create', '-q', '-f', 'qcow2', newer, '64M']);
          const build2 = await mirror.serveAs('debian:12', newer);
          const pulled = parseEvents((await holosOk(['pull', 'debian:12', '--json'])).stdout).filter(
            (e): e is Extract<Stamped, { type: 'pulled' }> => e.type === 'pulled',
          );
          assert.deepEqual(
            pulled.map((e) => [e.image, e.downloaded, e.path, e.digest]),
            [['debian:12', true, join(imagesDir, 'debian-12@2.qcow2'), build2.digest]],
            'holos pull downloads the new build as a second version',
          );
          assert.deepEqual(await imageGets(), ['full', 'full'], 'one more whole GET, of the new build');
          assert.deepEqual(
            (await cached()).map((r) => [r.file, r.current, r.digest, r.used_by]),
            [
              ['debian-12.qcow2', false, served.digest, ['access/app-0']],
              ['debian-12@2.qcow2', true, build2.digest, []],
            ],
            'both versions cached; app-0 stays on the first',
          );

          const text = (await holosOk(['plan'])).stdout;
          assert.match(text, /^access: nothing to do$/m, `nothing planned for the running app-0:\n${text}`);
          assert.match(
            text,
            /^ {2}note: a newer debian:12 is in the cache \(pulled \d{4}-\d\d-\d\d\); holos up --pull always moves app to it$/m,
          );
          assert.deepEqual(actionList(await planOf()), [], 'plan --json: nothing either');

          const always = actionList(await planOf(['--pull', 'always']));
          st.diagnostic(`plan --pull always: ${always.join(', ')}`);
          assert.ok(
            always.includes('instance:app-0 recreate'),
            `--pull always recreates app-0 on the new build: ${always.join(', ')}`,
          );
          assert.ok(
            !always.some((a) => a.startsWith('image:')),
            `nothing to pull, the new build is cached: ${always.join(', ')}`,
          );
          // Not applied: that would be a second boot. The VM is untouched.
          const alive = await holos(['exec', 'app', '--', 'true']);
          assert.equal(alive.code, 0, alive.stderr);
        },
      );

      await step(
        'a stopped instance: exec and console say so and list the instances; logs still read',
        async () => {
          const stop = await holos(['stop'], { timeoutMs: 5 * 60_000 });
          assert.equal(stop.code, 0, stop.stderr);
          const stopped =
            'holos: app-0 is stopped; start it with holos start app (instances: app-0 (stopped))\n';
          const exec = await holos(['exec', 'app', '--', 'true']);
          assert.deepEqual([exec.code, exec.stdout, exec.stderr], [1, '', stopped]);
          const attach = await holos(['console', 'app-0']);
          assert.deepEqual([attach.code, attach.stdout, attach.stderr], [1, '', stopped]);
          const logs = await holos(['logs', '-n', '1', 'app']);
          assert.equal(logs.code, 0, logs.stderr);
          assert.match(logs.stdout, /^app-0 \| .*\n$/);
        },
      );
    } finally {
      const down = await holos(['down'], { timeoutMs: 5 * 60_000 });
      assert.equal(down.code, 0, down.stderr);
    }
    const gone = await holos(['exec', 'app', '--', 'true']);
    assert.deepEqual(
      [gone.code, gone.stderr],
      [1, 'holos: app has not been created yet; it has no instances; holos up creates them\n'],
    );

    await step('after down, images prune removes both versions; nothing is cached', async () => {
      const prune = (await holosOk(['images', 'prune'])).stdout;
      assert.match(prune, /^removed debian:12 debian-12\.qcow2 \(.+\)$/m, prune);
      assert.match(prune, /^removed debian:12 debian-12@2\.qcow2 \(.+\)$/m, prune);
      assert.deepEqual(await cached(), []);
      assert.match((await holosOk(['images'])).stdout, /^nothing cached$/m);
      // digests.json (the sha256 cache of base files, util/digest.ts) is all that is left.
      const left = (await readdir(imagesDir)).filter((name) => name !== 'digests.json');
      assert.deepEqual(left, [], `${imagesDir} holds no image, record, lock or partial download`);
    });
  });
});

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
