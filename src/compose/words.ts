// A command written as a string (compose's `command: npm start`), split into words the way
// compose splits it: by POSIX shell quoting, with no shell. The compose spec says a string
// command does not run in a shell, so `$HOME` stays `$HOME`; a shell operator (`&&`, `|`, `>`)
// would only become a word, and is refused instead, saying how to run a shell.

const operators = new Set([';', '&', '|', '<', '>', '(', ')', '`']);
const blanks = new Set([' ', '\t', '\n']);
/** What a backslash escapes inside double quotes (elsewhere there, it is itself). */
const escapableInDoubleQuotes = new Set(['\\', '"', '$', '`', '\n']);

/** The words of `text`, or what is wrong with it. */
export function splitWords(text: string): string[] | string {
  const words: string[] = [];
  let word: string | undefined;
  const chars = [...text];
  for (let i = 0; i < chars.length; i++) {
    const char = chars[i]!;
    if (blanks.has(char)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else if (char === '\\') {
      const next = chars[++i];
      // A backslash before a line break joins the lines.
      if (next !== '\n') word = (word ?? '') + (next ?? '\\');
    } else if (char === "'") {
      const end = chars.indexOf("'", i + 1);
      if (end < 0) return 'has a single quote that is never closed';
      word = (word ?? '') + chars.slice(i + 1, end).join('');
      i = end;
    } else if (char === '"') {
      word ??= '';
      for (i++; chars[i] !== '"'; i++) {
        if (i >= chars.length) return 'has a double quote that is never closed';
        if (chars[i] === '\\' && escapableInDoubleQuotes.has(chars[i + 1]!)) {
          i++;
          if (chars[i] !== '\n') word += chars[i];
        } else word += chars[i];
      }
    } else if (operators.has(char)) {
      return `holds ${char}, which only a shell reads, and a string command runs in none (as in compose): quote it, or run a shell: ["sh", "-c", "…"]`;
    } else word = (word ?? '') + char;
  }
  if (word !== undefined) words.push(word);
  return words;
}
