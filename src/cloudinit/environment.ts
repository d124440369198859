// The guest's environment as one text that pam_env (/etc/environment: what ssh sessions and
// `holos exec` see) and systemd (EnvironmentFile=: what the main service sees) read the same
// way: `NAME=value` lines, the value unquoted. The two readers differ on everything else:
// pam_env strips quotes only when they open a value and keeps backslashes; systemd unquotes
// and unescapes; both drop blanks at the ends of a value, and neither can hold a line break.
// So a value is written only when it holds none of those, and any other is refused when the
// file is validated, instead of reaching the guest changed.

/** A variable name both readers accept. */
export const variableName = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** pam_env reads a line into a buffer of 8192 bytes (linux-pam's BUF_SIZE); longer ones are cut. */
const maxLineBytes = 8000;

/** Why `NAME=value` cannot be written faithfully, or undefined when it can. */
export function environmentProblem(name: string, value: string): string | undefined {
  if (!variableName.test(name))
    return 'a variable name is letters, digits and "_", and does not start with a digit';
  if (/[\n\r]/.test(value)) return `${name}'s value holds a line break, which /etc/environment cannot hold`;
  if (/[\p{Cc}\p{Cs}]/u.test(value)) return `${name}'s value holds a control character; write it without`;
  if (value.includes('\\'))
    return `${name}'s value holds a backslash, which pam_env and systemd read differently; write it without`;
  if (/^["']/.test(value))
    return `${name}'s value starts with a quote, which pam_env and systemd strip differently; write it without the quotes`;
  if (/^\s|\s$/u.test(value))
    return `${name}'s value starts or ends with a blank, which /etc/environment drops; write it without`;
  if (Buffer.byteLength(`${name}=${value}`) > maxLineBytes)
    return `${name}'s value is longer than /etc/environment holds (${maxLineBytes} bytes a line)`;
  return undefined;
}

/** The lines of an environment, sorted by name; every value passed environmentProblem. */
export function renderEnvironment(environment: Readonly<Record<string, string>>): string {
  return Object.keys(environment)
    .sort()
    .map((name) => `${name}=${environment[name]}\n`)
    .join('');
}
