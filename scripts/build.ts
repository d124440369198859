// npm run build: dist/cli.js (the bin) and the chunks it loads, bundled by esbuild. Each verb's
// module stays a chunk of its own, loaded when the verb runs: one file of everything made
// `holos --version` 1.55× slower than the tree tsc emitted. The dependencies are bundled too,
// fewer files to find and read at start-up (docs/bench.md), except ssh2, which loads native
// addons beside its own files, and pino, whose transports run its files in worker threads;
// both load only when a verb needs them. tsc only typechecks (npm run typecheck).

import { chmod, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

const root = join(import.meta.dirname, '..');
const outdir = resolve(process.argv[2] ?? join(root, 'dist')); // another folder: a copy to bench

await rm(outdir, { recursive: true, force: true }); // no chunk of an earlier build left behind
await build({
  absWorkingDir: root,
  // The switch of a project's private segment runs as a process of its own (resources/segment.ts).
  entryPoints: [
    { in: 'src/bin.ts', out: 'cli' },
    { in: 'src/net/switch-main.ts', out: 'switch' },
  ],
  outdir,
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20.19',
  external: ['ssh2', 'pino'],
  // The CommonJS dependencies (commander, yaml, …) call require, which an ES module lacks.
  banner: {
    js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
  },
  // Maps for stack traces (bin.ts), not for reading the source: src/ is beside dist/.
  sourcemap: true,
  sourcesContent: false,
  logLevel: 'warning',
});
await chmod(join(outdir, 'cli.js'), 0o755);
