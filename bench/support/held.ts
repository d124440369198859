// What the benchmarks that run holos on many VMs share: a project of N instances held before
// their first instruction (`extra_args: [-S]`, so that N emulated CPUs do not compete with what
// is measured and none answers the ACPI button), brought up by one checkout's holos in a network
// namespace and a state dir of its own; and the medians they print.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
export const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

let namespaces = 0;

/** A network namespace with lo up and a multicast route (the private segment's socket). */
export function netns(label: string) {
  const name = `holos-bench-${label}-${process.pid}-${namespaces++}`;
  execFileSync('ip', ['netns', 'add', name]);
  execFileSync('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up']);
  execFileSync('ip', ['netns', 'exec', name, 'ip', 'route', 'add', '224.0.0.0/4', 'dev', 'lo']);
  return { name, close: () => execFileSync('ip', ['netns', 'delete', name], { stdio: 'ignore' }) };
}

export interface HeldStackOptions {
  /** A built checkout: its dist/cli.js is the holos that runs. */
  checkout: string;
  instances: number;
  /** Names the namespace and the temporary directory. */
  label: string;
  /** More environment for holos (HOLOS_ACCEL is tcg unless this sets it). */
  env?: NodeJS.ProcessEnv;
  /** The project's name (default `bench`). */
  project?: string;
}

export type HeldStack = ReturnType<typeof heldStack>;

/** The project's directory and state dir, nothing brought up yet; `close` brings it down. */
export function heldStack({
  checkout,
  instances,
  label,
  env: extra = {},
  project = 'bench',
}: HeldStackOptions) {
  const root = mkdtempSync(join(tmpdir(), `holos-${label}-`));
  const stateDir = join(root, 'state');
  const cli = join(checkout, 'dist', 'cli.js');
  const env = { ...process.env, HOLOS_ACCEL: 'tcg', ...extra, HOLOS_STATE_DIR: stateDir };
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(root, 'empty.qcow2'), '16M']);
  writeFileSync(
    join(root, 'holos.yaml'),
    `name: ${project}\nservices:\n  app:\n    image: ./empty.qcow2\n    replicas: ${instances}\n    vm: { memory_mb: 128, extra_args: [-S] }\n    stop_grace_period: 1s\n`,
  );
  const ns = netns(label);
  /** holos in the namespace; `wrap` goes before node (e.g. GNU time). Throws on a non-zero exit. */
  const run = (args: string[], wrap: string[] = []) => {
    const started = performance.now();
    const result = spawnSync('ip', ['netns', 'exec', ns.name, ...wrap, process.execPath, cli, ...args], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const ms = performance.now() - started;
    if (result.status !== 0) throw new Error(`holos ${args.join(' ')}: ${result.stderr.toString()}`);
    return { ms, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
  };
  return {
    root,
    stateDir,
    cli,
    env,
    ns: ns.name,
    run,
    /** Milliseconds of one whole command. */
    timed: (...args: string[]) => run(args).ms,
    close() {
      try {
        run(['down']);
      } catch (error) {
        console.error(`${label}: down failed: ${(error as Error).message}`);
      } finally {
        ns.close();
        rmSync(root, { recursive: true, force: true });
      }
    },
  };
}
