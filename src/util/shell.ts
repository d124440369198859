/** One shell word, whatever the text holds: quotes, spaces, `$()`, newlines. */
export function shellQuote(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

export const shellCommand = (words: readonly string[]) => words.map(shellQuote).join(' ');
