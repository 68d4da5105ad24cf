/**
 * Escaping for a terminal: what a server or a job sends can hold escape sequences that set the
 * window title, write the clipboard (OSC 52), make links or ask the terminal to answer on stdin.
 */

/** SGR (colour) sequences: the one kind of escape sequence shown as it is in text. */
// eslint-disable-next-line no-control-regex
const SGR = /^\x1b\[[0-9;]*m/;
/**
 * In a program's output also cursor moves and erasing (progress bars): CSI with a final byte that
 * changes only what is shown. Sequences that make the terminal answer (6n, 21t, c) are escaped.
 */
// eslint-disable-next-line no-control-regex
const DISPLAY_CSI = /^\x1b\[[0-9;?]*[ABCDEFGHJKfm]/;
/**
 * Control characters (C0, DEL, C1), the bidirectional overrides and isolates (text that reads
 * other than it is stored), and ESC itself: each found where it is not allowed.
 */
// eslint-disable-next-line no-control-regex
const TERMINAL_CONTROL = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

function escapeControls(text: string, keep: RegExp, sequences: RegExp): string {
  return text.replace(TERMINAL_CONTROL, (char, offset: number) => {
    if (keep.test(char)) return char;
    if (char === '\x1b' && sequences.test(text.slice(offset, offset + 32))) return char;
    const code = char.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * Text for a terminal: every control character and escape sequence shown as `\xNN` (or `\uNNNN`),
 * except newlines, tabs and colours. The one place where strings a server sent (job fields,
 * names, error messages) are made harmless before a terminal reads them; --json output is
 * JSON-escaped instead, and output to a pipe or file stays as it is.
 */
export function escapeForTerminal(text: string): string {
  return escapeControls(text, /[\n\t]/, SGR);
}

/**
 * A program's output for a terminal: as escapeForTerminal, but carriage returns, backspaces,
 * cursor moves and erasing stay (progress bars); titles, clipboard writes (OSC 52), links,
 * device control strings and queries are escaped.
 */
export function escapeStreamForTerminal(chunk: string | Uint8Array): string | Uint8Array {
  if (typeof chunk === 'string') return escapeControls(chunk, STREAM_KEEP, DISPLAY_CSI);
  // Bytes are read one to one (latin1), so a character cut between two chunks is not garbled:
  // C1 controls and the bidi marks are matched by their UTF-8 bytes.
  const text = Buffer.from(chunk).toString('latin1');
  // eslint-disable-next-line no-control-regex
  const escaped = text.replace(/[\u0000-\u001f\u007f]|\xc2[\x80-\x9f]|\xe2\x80[\xaa-\xae]|\xe2\x81[\xa6-\xa9]/g, (match, offset: number) => {
    if (match.length > 1) return escapeControls(Buffer.from(match, 'latin1').toString('utf8'), STREAM_KEEP, DISPLAY_CSI);
    if (STREAM_KEEP.test(match) || (match === '\x1b' && DISPLAY_CSI.test(text.slice(offset, offset + 32)))) return match;
    return `\\x${match.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
  return escaped === text ? chunk : Buffer.from(escaped, 'latin1');
}

const STREAM_KEEP = /[\n\t\r\b]/;
