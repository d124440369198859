/**
 * An error the user can fix: printed as its message alone (no stack trace unless --debug),
 * with a non-zero exit status. Multi-line messages print one problem per line.
 */
export class UserError extends Error {
  readonly exitCode: number;

  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
    this.name = 'UserError';
  }
}

/** Problems in a compose file: each line already starts with `file:line:col:`. */
export class ComposeProblems extends UserError {
  readonly problems: string[];

  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.problems = problems;
    this.name = 'ComposeProblems';
  }
}

/** How the CLI prints a user error: file problems as they are, anything else after `holos: `. */
export function formatUserError(error: UserError): string {
  return error instanceof ComposeProblems ? error.message : `holos: ${error.message}`;
}
