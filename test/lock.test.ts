import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from '../src/errors.js';
import { acquireLock } from '../src/state/lock.js';

const workDir = mkdtempSync(join(tmpdir(), 'holos-lock-'));
after(() => rmSync(workDir, { recursive: true, force: true }));

let count = 0;
const lockPath = () => join(workDir, `p${++count}`, 'lock');

const tsx = import.meta.resolve('tsx');
const lockModule = new URL('../src/state/lock.ts', import.meta.url).href;

/** Runs `body` as an ES module in another node process, with `acquireLock` in scope. */
function nodeScript(body: string, args: string[]): ChildProcess {
  const script = `const { acquireLock } = await import(${JSON.stringify(lockModule)});\n${body}`;
  return spawn(process.execPath, ['--import', tsx, '--input-type=module', '-e', script, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
}

/** Kills the child (if it still runs) when the test ends. */
function killAfter(t: TestContext, child: ChildProcess): void {
  const exited = once(child, 'exit');
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
}

/** Another holos: acquires the lock, says so on stdout (one JSON object a line), releases when stdin ends. */
class OtherHolos {
  readonly child: ChildProcess;
  private readonly lines: AsyncIterator<string>;

  /** `title`: the process's name in /proc (its comm), set before it takes the lock. */
  constructor(t: TestContext, path: string, title?: string) {
    this.child = nodeScript(
      `${title === undefined ? '' : `process.title = ${JSON.stringify(title)};`}
       const say = (message) => console.log(JSON.stringify(message));
       const lock = await acquireLock(process.argv[1], 'p', { onWait: (holder) => say({ waiting: holder }) });
       say({ acquired: process.pid });
       process.stdin.resume();
       process.stdin.on('end', async () => { await lock.release(); say({ released: true }); });`,
      [path],
    );
    killAfter(t, this.child);
    this.lines = createInterface({ input: this.child.stdout! })[Symbol.asyncIterator]();
  }

  get pid(): number {
    return this.child.pid!;
  }

  async next(): Promise<Record<string, unknown>> {
    const line = await this.lines.next();
    if (line.done) throw new Error(`the other holos (pid ${this.pid}) exited without a word`);
    return JSON.parse(line.value) as Record<string, unknown>;
  }

  /** Tells it to release the lock and waits until it has. */
  async release(): Promise<void> {
    this.child.stdin!.end();
    assert.deepEqual(await this.next(), { released: true });
  }
}

/** A pid that no process has: a child that ran and was reaped. */
async function deadPid(): Promise<number> {
  const child = spawn('true');
  await once(child, 'exit');
  return child.pid!;
}

/** A live process that has nothing to do with the lock. */
function unrelatedProcess(t: TestContext): number {
  const child = spawn('sleep', ['600'], { stdio: 'ignore' });
  killAfter(t, child);
  return child.pid!;
}

interface HolderFile {
  pid: number;
  start: number;
  boot: string;
}

/** The lock is a directory with one file in it, saying who holds it. */
function holderFile(path: string): string {
  const entries = readdirSync(path);
  assert.equal(entries.length, 1, `${path} holds ${JSON.stringify(entries)}`);
  return join(path, entries[0]!);
}

const holderOf = (path: string) => JSON.parse(readFileSync(holderFile(path), 'utf8')) as HolderFile;

/** A lock as holos writes it, for a holder that is not there. */
function writeLock(path: string, content: string): void {
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, 'pid-1-feedface'), content);
}

const bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();

test('acquire writes our pid, start time and boot to the lock; release removes it; it can be taken again', async () => {
  const path = lockPath();
  const lock = await acquireLock(path, 'p');
  const holder = holderOf(path);
  assert.deepEqual(Object.keys(holder), ['pid', 'start', 'boot']);
  assert.equal(holder.pid, process.pid);
  assert.ok(Number.isSafeInteger(holder.start) && holder.start > 0);
  assert.equal(holder.boot, bootId);
  assert.equal(statSync(holderFile(path)).mode & 0o777, 0o600);
  assert.equal(statSync(path).mode & 0o777, 0o700);
  await lock.release();
  assert.deepEqual(readdirSync(join(path, '..')), []);
  const again = await acquireLock(path, 'p');
  await again.release();
});

test('a second holos waits, is told who holds the lock, and gets it once released', async (t) => {
  const path = lockPath();
  const lock = await acquireLock(path, 'p');
  const other = new OtherHolos(t, path);
  assert.deepEqual(await other.next(), { waiting: process.pid });
  assert.equal(holderOf(path).pid, process.pid);

  await lock.release();
  assert.deepEqual(await other.next(), { acquired: other.pid });
  assert.equal(holderOf(path).pid, other.pid);
  await other.release();
});

test('noWait fails at once with a UserError naming the holder', async (t) => {
  const path = lockPath();
  const other = new OtherHolos(t, path);
  assert.deepEqual(await other.next(), { acquired: other.pid });
  const waits: number[] = [];
  await assert.rejects(acquireLock(path, 'shop', { noWait: true, onWait: (pid) => waits.push(pid) }), {
    name: 'UserError',
    message: `project shop is being changed by another holos (pid ${other.pid}); try again when it finishes`,
  });
  assert.deepEqual(waits, []);
  assert.equal(holderOf(path).pid, other.pid);
  await other.release();
});

test('timeoutMs gives up with a UserError after telling once that it waits', async (t) => {
  const path = lockPath();
  const other = new OtherHolos(t, path);
  assert.deepEqual(await other.next(), { acquired: other.pid });
  const waits: number[] = [];
  const attempt = acquireLock(path, 'shop', { timeoutMs: 500, onWait: (pid) => waits.push(pid) });
  await assert.rejects(attempt, (error) => {
    assert.ok(error instanceof UserError);
    assert.equal(
      error.message,
      `project shop: gave up waiting for the holos with pid ${other.pid} to finish`,
    );
    return true;
  });
  assert.deepEqual(waits, [other.pid]);
  await other.release();
});

/** Takes the lock with noWait (so a lock judged live fails at once), checks it is ours, releases it. */
async function takesOver(path: string, what: string): Promise<void> {
  const waits: number[] = [];
  const lock = await acquireLock(path, 'p', { noWait: true, onWait: (pid) => waits.push(pid) });
  assert.equal(holderOf(path).pid, process.pid, what);
  assert.deepEqual(waits, []);
  await lock.release();
  assert.deepEqual(readdirSync(join(path, '..')), [], what);
}

/** noWait fails, naming `pid` as the holder, and the lock is left as it was. */
async function refused(path: string, pid: number, what: string): Promise<void> {
  const before = readdirSync(join(path, '..'));
  await assert.rejects(
    acquireLock(path, 'p', { noWait: true }),
    { name: 'UserError', message: new RegExp(`another holos \\(pid ${pid}\\)`) },
    what,
  );
  assert.deepEqual(readdirSync(join(path, '..')), before, what);
}

test('a lock left by a holos that died is taken over', async () => {
  const dead = await deadPid();
  const ours = lockPath();
  const lock = await acquireLock(ours, 'p');
  const { start } = holderOf(ours);
  await lock.release();
  // The lock file of an older holos: its pid alone, or torn by a crash.
  for (const leftover of [`${dead}\n`, '', 'garbage\n', `${process.pid}\n`]) {
    const path = lockPath();
    await acquireLock(path, 'p').then((lock) => lock.release()); // makes the directory
    writeFileSync(path, leftover);
    await takesOver(path, JSON.stringify(leftover));
  }
  // This holos's own format, from a holder that is gone, or started before the last boot.
  for (const leftover of [
    JSON.stringify({ pid: dead, start, boot: bootId }),
    JSON.stringify({ pid: process.pid, start: start + 1, boot: bootId }),
    JSON.stringify({ pid: process.pid, start, boot: 'another-boot' }),
    '',
  ]) {
    const path = lockPath();
    writeLock(path, leftover);
    await takesOver(path, leftover);
  }
});

test('a pid now used by an unrelated process: another start time is a dead holder', async (t) => {
  const pid = unrelatedProcess(t);
  const path = lockPath();
  // Start time 1 (ticks after boot): no process this test starts began then.
  writeLock(path, JSON.stringify({ pid, start: 1, boot: bootId }));
  await takesOver(path, 'live pid, other start time');

  // The same live pid in an older holos's file, which has no start time: liveness alone says held.
  writeFileSync(path, `${pid}\n`);
  await refused(path, pid, 'live pid, no start time');
  rmSync(path);
});

test('a zombie (killed, not yet reaped) holds no lock', async (t) => {
  // The shell's background child is never waited for by the `sleep` the shell becomes. The
  // child exits only when told, once the shell is that `sleep`: a child that ended before the
  // exec could be reaped by the shell (seen with the test files run side by side).
  const parent = spawn('sh', ['-c', 'exec 3<&0; read _ <&3 & echo $!; exec sleep 600'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  killAfter(t, parent);
  const [line] = (await once(createInterface({ input: parent.stdout }), 'line')) as [string];
  const zombie = Number(line);
  while (readFileSync(`/proc/${parent.pid}/comm`, 'utf8') !== 'sleep\n') await sleep(10);
  parent.stdin.end('\n');
  while (!/\) Z /.test(readFileSync(`/proc/${zombie}/stat`, 'utf8'))) await sleep(10);
  const path = lockPath();
  await acquireLock(path, 'p').then((lock) => lock.release()); // makes the directory
  writeFileSync(path, `${zombie}\n`);
  await takesOver(path, 'zombie');
});

test('a holder whose name has spaces and parentheses is read right (fields after the last ")")', async (t) => {
  // Its title is the name in /proc/PID/stat (node 24 names its main thread MainThread, so a link
  // to node under that name, which named the process on node 20, no longer does).
  const path = lockPath();
  const other = new OtherHolos(t, path, 'no) (de x');
  assert.deepEqual(await other.next(), { acquired: other.pid });
  assert.match(readFileSync(`/proc/${other.pid}/stat`, 'utf8'), /^\d+ \(no\) \(de x\) /);
  await refused(path, other.pid, 'live holder');
  await other.release();
});

test('the same process taking a lock it holds is refused (a bug in the caller); the lock stays', async () => {
  const path = lockPath();
  const lock = await acquireLock(path, 'p');
  const before = readFileSync(holderFile(path), 'utf8');
  await assert.rejects(acquireLock(path, 'p'), (error) => {
    assert.ok(!(error instanceof UserError), 'a bug, not a user error');
    assert.equal(
      (error as Error).message,
      `lock ${path} is already held by this process (pid ${process.pid}): acquired again before its release`,
    );
    return true;
  });
  assert.equal(readFileSync(holderFile(path), 'utf8'), before);
  assert.deepEqual(readdirSync(join(path, '..')), ['lock']);
  await lock.release();
  assert.deepEqual(readdirSync(join(path, '..')), []);
});

test('the directory removed under a waiting holos: it takes the lock; the old holder releases only its own', async (t) => {
  const path = lockPath();
  const other = new OtherHolos(t, path);
  assert.deepEqual(await other.next(), { acquired: other.pid });
  let waiting!: () => void;
  const told = new Promise<void>((resolve) => (waiting = resolve));
  const attempt = acquireLock(path, 'p', { onWait: () => waiting() });
  await told;
  // What `down` of holos 0.1 did: the project directory, lock and all, removed.
  rmSync(join(path, '..'), { recursive: true });
  const lock = await attempt;
  assert.equal(holderOf(path).pid, process.pid);

  await other.release();
  assert.equal(holderOf(path).pid, process.pid, 'the old holder removed our lock');
  await lock.release();
  assert.deepEqual(readdirSync(join(path, '..')), []);
});

test('a waiter killed while it waits leaves its claim beside the lock; the next holder removes it', async (t) => {
  const path = lockPath();
  const holder = new OtherHolos(t, path);
  assert.deepEqual(await holder.next(), { acquired: holder.pid });
  const waiter = new OtherHolos(t, path);
  assert.deepEqual(await waiter.next(), { waiting: holder.pid });
  waiter.child.kill('SIGKILL');
  await once(waiter.child, 'exit');
  const claims = readdirSync(join(path, '..')).filter((name) => name !== 'lock');
  assert.equal(claims.length, 1);
  assert.match(claims[0]!, new RegExp(`^lock\\.new-${waiter.pid}-\\d+-[0-9a-f]+$`));

  await holder.release();
  const lock = await acquireLock(path, 'p');
  assert.deepEqual(readdirSync(join(path, '..')), ['lock']);
  await lock.release();
});

test('an I/O error it cannot handle is a UserError naming the path', async () => {
  const file = join(workDir, 'a-file');
  writeFileSync(file, '');
  const path = join(file, 'lock');
  await assert.rejects(acquireLock(path, 'p'), (error) => {
    assert.ok(error instanceof UserError);
    assert.match(error.message, new RegExp(`^cannot lock ${path}: ENOTDIR`));
    return true;
  });
});

test('holders never overlap: several processes taking the lock in turn', async (t) => {
  const path = lockPath();
  await acquireLock(path, 'p').then((lock) => lock.release());
  const log = join(workDir, 'overlap.log');
  // Each worker marks entering and leaving its critical section; overlapping holders would
  // interleave the marks. A lock file read empty or gone during a hand-over once let this happen.
  const workers = Array.from({ length: 6 }, () =>
    nodeScript(
      `import { appendFileSync } from 'node:fs';
       import { setTimeout as sleep } from 'node:timers/promises';
       const [path, log] = process.argv.slice(1);
       for (let i = 0; i < 15; i++) {
         const lock = await acquireLock(path, 'p');
         appendFileSync(log, '+' + process.pid + '\\n');
         await sleep(Math.random() * 3);
         appendFileSync(log, '-' + process.pid + '\\n');
         await lock.release();
         await sleep(Math.random() * 3);
       }`,
      [path, log],
    ),
  );
  const exits = workers.map((w) => once(w, 'exit'));
  t.after(async () => {
    for (const [i, w] of workers.entries())
      if (w.exitCode === null && w.signalCode === null) {
        w.kill('SIGKILL');
        await exits[i];
      }
  });
  for (const [code] of await Promise.all(exits)) assert.equal(code, 0);

  const marks = readFileSync(log, 'utf8').trim().split('\n');
  assert.equal(marks.length, 6 * 15 * 2);
  for (let i = 0; i < marks.length; i += 2) {
    assert.match(marks[i]!, /^\+\d+$/, `line ${i + 1}`);
    assert.equal(marks[i + 1], `-${marks[i]!.slice(1)}`, `line ${i + 2}: another holder entered`);
  }
});

test('many processes racing for the lock of a dead holder: exactly one takes it, each round', async (t) => {
  const path = lockPath();
  const rounds = 50;
  // Long-lived racers, so that a round costs no process start: each line on stdin is a round
  // (`go`: take the lock without waiting, say won or lost) or the end of one (`release`).
  const racers = Array.from({ length: 6 }, () =>
    nodeScript(
      `import { createInterface } from 'node:readline';
       const say = (message) => console.log(JSON.stringify(message));
       let lock;
       for await (const line of createInterface({ input: process.stdin })) {
         if (line === 'release') {
           await lock?.release();
           lock = undefined;
           say({ released: true });
           continue;
         }
         try {
           lock = await acquireLock(process.argv[1], 'p', { noWait: true });
           say({ won: process.pid });
         } catch (error) {
           if (error.name !== 'UserError') throw error;
           say({ lost: error.message });
         }
       }`,
      [path],
    ),
  );
  for (const racer of racers) killAfter(t, racer);
  const replies = racers.map((racer) => createInterface({ input: racer.stdout! })[Symbol.asyncIterator]());
  const all = async (line: string) => {
    for (const racer of racers) racer.stdin!.write(`${line}\n`);
    return Promise.all(
      replies.map(async (reply) => {
        const next = await reply.next();
        assert.ok(!next.done, 'a racer exited');
        return JSON.parse(next.value) as { won?: number; lost?: string; released?: true };
      }),
    );
  };
  mkdirSync(join(path, '..'), { recursive: true });
  const dead = await deadPid();
  for (let round = 0; round < rounds; round++) {
    // Both kinds of leftover: this holos's, and an older holos's lock file.
    if (round % 2 === 0) writeLock(path, JSON.stringify({ pid: dead, start: 1, boot: bootId }));
    else writeFileSync(path, `${dead}\n`);
    const results = await all('go');
    const winners = results.flatMap((r) => (r.won === undefined ? [] : [r.won]));
    assert.equal(winners.length, 1, `round ${round}: ${JSON.stringify(results)}`);
    for (const r of results)
      if (r.lost !== undefined) assert.match(r.lost, new RegExp(`\\(pid ${winners[0]}\\)`), `round ${round}`);
    assert.equal(holderOf(path).pid, winners[0]);
    await all('release');
    assert.deepEqual(readdirSync(join(path, '..')), [], `round ${round}`);
  }
});
