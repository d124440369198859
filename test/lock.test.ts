import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test, type TestContext } from 'node:test';
import { UserError } from '../src/errors.js';
import { acquireLock } from '../src/reconcile/lock.js';

const workDir = mkdtempSync(join(tmpdir(), 'holos-lock-'));
after(() => rmSync(workDir, { recursive: true, force: true }));

let count = 0;
const lockPath = () => join(workDir, `p${++count}`, 'lock');

const tsx = import.meta.resolve('tsx');
const lockModule = new URL('../src/reconcile/lock.ts', import.meta.url).href;

/** Runs `body` as an ES module in another node process, with `acquireLock` in scope. */
function nodeScript(body: string, args: string[]): ChildProcess {
  const script = `const { acquireLock } = await import(${JSON.stringify(lockModule)});\n${body}`;
  return spawn(process.execPath, ['--import', tsx, '--input-type=module', '-e', script, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
}

/** Another holos: acquires the lock, says so on stdout (one JSON object a line), releases when stdin ends. */
class OtherHolos {
  readonly child: ChildProcess;
  private readonly lines: AsyncIterator<string>;

  constructor(t: TestContext, path: string) {
    this.child = nodeScript(
      `const say = (message) => console.log(JSON.stringify(message));
       const lock = await acquireLock(process.argv[1], 'p', { onWait: (holder) => say({ waiting: holder }) });
       say({ acquired: process.pid });
       process.stdin.resume();
       process.stdin.on('end', async () => { await lock.release(); say({ released: true }); });`,
      [path],
    );
    const exited = once(this.child, 'exit');
    t.after(async () => {
      if (this.child.exitCode === null && this.child.signalCode === null) {
        this.child.kill('SIGKILL');
        await exited;
      }
    });
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

test('acquire writes our pid to the lock file; release removes it; it can be taken again', async () => {
  const path = lockPath();
  const lock = await acquireLock(path, 'p');
  assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);
  assert.equal(statSync(path).mode & 0o777, 0o600);
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
  assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`);

  await lock.release();
  assert.deepEqual(await other.next(), { acquired: other.pid });
  assert.equal(readFileSync(path, 'utf8'), `${other.pid}\n`);
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
  assert.equal(readFileSync(path, 'utf8'), `${other.pid}\n`);
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

test('a lock left by a holos that died is taken over', async () => {
  for (const leftover of [`${await deadPid()}\n`, '', 'garbage\n']) {
    const path = lockPath();
    await acquireLock(path, 'p').then((lock) => lock.release()); // makes the directory
    writeFileSync(path, leftover);
    const waits: number[] = [];
    const lock = await acquireLock(path, 'p', { noWait: true, onWait: (pid) => waits.push(pid) });
    assert.equal(readFileSync(path, 'utf8'), `${process.pid}\n`, JSON.stringify(leftover));
    assert.deepEqual(waits, []);
    await lock.release();
  }
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
