// Argument rewriting before commander sees the command line. Loaded eagerly: keep it small.

/** Program options that take a value (`-f x` before the verb is the compose file). */
const valuedGlobals = new Set([
  '-f',
  '--file',
  '-p',
  '--project-name',
  '--state-dir',
  '--log-level',
  '--log-file',
  '--env-file',
  '--profile',
]);

/**
 * `holos logs -f` means follow, as in compose, although `-f` is also the global `--file`
 * (which commander would take wherever it stands). So after the verb `logs`, and before any
 * `--`, `-f` (alone or in a cluster such as `-ft`) becomes `--follow`; before the verb, `-f`
 * is still the file: `holos -f stack.yaml logs -f web`. Other argv is returned as it is.
 */
export function followFlagAfterLogs(argv: readonly string[]): string[] {
  let verb = -1;
  for (let i = 2; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') break;
    if (valuedGlobals.has(arg)) i++;
    else if (!arg.startsWith('-')) {
      verb = i;
      break;
    }
  }
  if (verb === -1 || argv[verb] !== 'logs') return [...argv];
  const out = argv.slice(0, verb + 1);
  let literal = false;
  for (const arg of argv.slice(verb + 1)) {
    if (literal || !/^-[a-zA-Z]*f[a-zA-Z]*$/.test(arg) || /[^ft]/.test(arg.slice(1))) {
      literal ||= arg === '--';
      out.push(arg);
      continue;
    }
    for (const flag of arg.slice(1)) out.push(flag === 'f' ? '--follow' : `-${flag}`);
  }
  return out;
}
