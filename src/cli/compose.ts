import type { Command } from 'commander';
import type { GlobalOptions } from './context.js';

// Offline verbs: they read the compose file and never touch the state dir or the network.

export function registerComposeCommands(program: Command, globals: () => GlobalOptions): void {
  program
    .command('validate')
    .description('check the compose file and list every problem with its file:line:col')
    .option('-q, --quiet', 'print nothing; the exit status says whether the file is valid')
    .action(async (options: { quiet?: boolean }) => {
      const { displayName, findComposeFile, validateComposeFile } = await import('../compose/load.js');
      const { ComposeProblems } = await import('../errors.js');
      const { file, projectName } = globals();
      const result = validateComposeFile(findComposeFile(process.cwd(), file), { projectName });
      if (!result.ok) throw new ComposeProblems(options.quiet ? [] : result.problems);
      if (options.quiet) return;
      const { compose, project } = result.loaded;
      const services = Object.values(compose.services);
      const instances = services.reduce((sum, s) => sum + s.replicas, 0);
      const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
      console.log(
        `${displayName(result.file)}: valid (project ${project}, ${plural(services.length, 'service')}, ${plural(instances, 'instance')})`,
      );
    });

  program
    .command('config')
    .description('print the project as holos resolves it: defaults filled in, replicas expanded')
    .option('--format <format>', 'yaml or json', 'yaml')
    .action(async (options: { format: string }) => {
      const { loadCompose } = await import('../compose/load.js');
      const { resolveProject } = await import('../compose/resolve.js');
      const { toConfig } = await import('../compose/config.js');
      const { UserError } = await import('../errors.js');
      if (options.format !== 'yaml' && options.format !== 'json')
        throw new UserError(`--format ${options.format}: use yaml or json`);
      const { file, projectName } = globals();
      const config = toConfig(resolveProject(loadCompose({ cwd: process.cwd(), file, projectName })));
      if (options.format === 'json') console.log(JSON.stringify(config, null, 2));
      else process.stdout.write((await import('yaml')).stringify(config, { lineWidth: 0 }));
    });

  program
    .command('schema')
    .description('print the JSON Schema of holos.yaml (for editors and the YAML language server)')
    .action(async () => {
      const { composeJsonSchema } = await import('../compose/jsonschema.js');
      console.log(JSON.stringify(composeJsonSchema(), null, 2));
    });
}
