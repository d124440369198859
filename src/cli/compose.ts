import { stringify } from 'yaml';
import { toConfig } from '../compose/config.js';
import { composeJsonSchema } from '../compose/jsonschema.js';
import { displayName, findComposeFiles, loadCompose, validateComposeFiles } from '../compose/load.js';
import { resolveProject } from '../compose/resolve.js';
import { ComposeProblems, UserError } from '../errors.js';
import type { GlobalOptions } from './context.js';

// Offline verbs: they read the compose file and never touch the state dir or the network.

export function validate(globals: GlobalOptions, options: { quiet?: boolean }): void {
  const { file, projectName } = globals;
  const result = validateComposeFiles(findComposeFiles(process.cwd(), file), { projectName });
  if (!result.ok) throw new ComposeProblems(options.quiet ? [] : result.problems);
  if (options.quiet) return;
  const { compose, project } = result.loaded;
  const services = Object.values(compose.services);
  const instances = services.reduce((sum, s) => sum + s.replicas, 0);
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  console.log(
    `${result.loaded.files.map(displayName).join(' + ')}: valid (project ${project}, ${plural(services.length, 'service')}, ${plural(instances, 'instance')})`,
  );
}

export function config(globals: GlobalOptions, options: { format: string }): void {
  if (options.format !== 'yaml' && options.format !== 'json')
    throw new UserError(`--format ${options.format}: use yaml or json`);
  const { file, projectName } = globals;
  const resolved = toConfig(resolveProject(loadCompose({ cwd: process.cwd(), files: file, projectName })));
  if (options.format === 'json') console.log(JSON.stringify(resolved, null, 2));
  else process.stdout.write(stringify(resolved, { lineWidth: 0 }));
}

export function schema(): void {
  console.log(JSON.stringify(composeJsonSchema(), null, 2));
}
