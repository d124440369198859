#!/usr/bin/env node
// The installed program, dist/cli.js: the bundle's entry, before the program itself (cli.ts).
// Node reads a module's source map when it loads the module, so for --debug's stack traces to
// name src/ files the maps are switched on here, before cli.ts and its chunks load; only for
// --debug, because reading them costs every other run its start-up.
if (process.argv.includes('--debug')) process.setSourceMapsEnabled(true);
await import('./cli.js');
