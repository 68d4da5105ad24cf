/**
 * One word for a POSIX shell (sh, dash, busybox ash, bash): the text in single quotes, each `'`
 * written as `'\''`. Nothing inside single quotes is special (`$`, backquotes, `\`, newlines), so
 * any string comes back as itself, one argument.
 */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}
