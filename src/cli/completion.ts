import type { Command } from 'commander';
import { findComposeFiles, validateComposeFiles } from '../compose/load.js';
import { resolveProject } from '../compose/resolve.js';
import { UserError } from '../errors.js';
import type { GlobalOptions } from './context.js';

// Shell completion: the scripts ask `holos __complete -- <words…>` for the candidates of the
// last word (the one being typed), so verbs, flags and the project's names come from the same
// commander tree and compose file holos itself reads, in every shell alike.

export type Shell = 'bash' | 'zsh' | 'fish';
export const shells: readonly Shell[] = ['bash', 'zsh', 'fish'];

const scripts: Record<Shell, string> = {
  bash: `# holos completion for bash: source <(holos completion bash)
_holos() {
  local IFS=$'\\n'
  COMPREPLY=($(holos __complete -- "\${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _holos holos
`,
  zsh: `#compdef holos
# holos completion for zsh: source <(holos completion zsh), or save it as _holos in $fpath
_holos() {
  local -a candidates
  candidates=("\${(@f)$(holos __complete -- "\${(@)words[2,CURRENT]}" 2>/dev/null)}")
  if (( \${#candidates} )) && [[ -n "\${candidates[1]}" ]]; then compadd -a candidates; else _files; fi
}
compdef _holos holos
`,
  fish: `# holos completion for fish: holos completion fish | source
complete -c holos -f -a '(holos __complete -- (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)'
`,
};

export const completionScript = (shell: Shell) => scripts[shell];

/** Whether `flag` takes a value: the verb's own flag first (logs -f follows), else the global one (-f FILE). */
const takesValue = (command: Command, program: Command, flag: string) => {
  const own = (c: Command) => c.options.find((o) => o.long === flag || o.short === flag);
  const option = own(command) ?? own(program);
  return option !== undefined && (option.required || option.optional);
};

/**
 * The candidates for the last of `words` (what is typed after `holos`, the word being
 * completed last, maybe empty): a verb's subcommands, its flags and the globals' (after a
 * `-`), or the project's names where the verb takes an argument. Nothing after a flag that
 * takes a value: the shell completes a file there.
 */
export function candidates(program: Command, words: readonly string[], names: () => string[]): string[] {
  const current = words.at(-1) ?? '';
  let command = program;
  let afterValueFlag = false;
  for (const word of words.slice(0, -1)) {
    if (afterValueFlag) {
      afterValueFlag = false;
      continue;
    }
    if (word.startsWith('-')) {
      afterValueFlag = !word.includes('=') && takesValue(command, program, word);
      continue;
    }
    const sub = command.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (sub) command = sub;
  }
  if (afterValueFlag) return [];
  const found = current.startsWith('-')
    ? [
        ...new Set(
          [command, program].flatMap((c) =>
            c.options.flatMap((o) => (o.hidden ? [] : [o.long ?? o.short ?? ''])),
          ),
        ),
      ]
    : [
        ...command.commands.filter((c) => !(c as { _hidden?: boolean })._hidden).map((c) => c.name()),
        ...(command.registeredArguments.length > 0 ? names() : []),
      ];
  return found.filter((word) => word !== '' && word.startsWith(current)).sort();
}

export function printScript(shell: string): void {
  if (!(shells as readonly string[]).includes(shell))
    throw new UserError(`completion ${shell}: use ${shells.join(', ')}`);
  process.stdout.write(completionScript(shell as Shell));
}

/** `holos __complete`: the candidates, one a line; the project's names read offline, if any. */
export function complete(program: Command, words: string[], globals: GlobalOptions): void {
  const names = () => {
    try {
      const result = validateComposeFiles(findComposeFiles(process.cwd(), globals.file), {
        projectName: globals.projectName,
      });
      if (!result.ok) return [];
      const project = resolveProject(result.loaded);
      return [...project.services.map((s) => s.name), ...project.instances.map((i) => i.name)];
    } catch {
      return []; // no compose file here
    }
  };
  const found = candidates(program, words.length > 0 ? words : [''], names);
  if (found.length > 0) process.stdout.write(`${found.join('\n')}\n`);
}
