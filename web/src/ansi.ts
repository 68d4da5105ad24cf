/*
 * A log's text as plain segments with colour classes: SGR colour codes (ESC [ ... m) become
 * classes, every other escape or control sequence (OSC titles and links, cursor moves, DCS, bare
 * control characters) is dropped. The segments are rendered as text nodes, never as HTML.
 */

export interface Segment {
  text: string;
  /** `fg-1`, `bg-4`, `bold`, ...: classes the style sheet colours. */
  classes: string;
}

interface Style {
  fg?: string;
  bg?: string;
  bold?: boolean;
  dim?: boolean;
  italic?: boolean;
  underline?: boolean;
}

// ESC [ params final | ESC ] ... (BEL | ESC \) | ESC P/X/^/_ ... ESC \ | other ESC x | C1 CSI (\x9b) | control characters
const SEQUENCE =
  // biome-ignore lint: control characters are the point of this pattern
  /\x1b\[([0-?]*)([ -/]*)([@-~])|\x9b([0-?]*)[ -/]*[@-~]|\x1b\][\s\S]*?(?:\x07|\x1b\\|$)|\x9d[\s\S]*?(?:\x07|\x9c|$)|\x1b[PX^_][\s\S]*?(?:\x1b\\|$)|\x1b[ -/]*[0-~]?|[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]/g;

export function ansiSegments(text: string): Segment[] {
  const segments: Segment[] = [];
  let style: Style = {};
  let last = 0;
  const push = (chunk: string): void => {
    if (!chunk) return;
    const classes = classesOf(style);
    const previous = segments.at(-1);
    if (previous && previous.classes === classes) previous.text += chunk;
    else segments.push({ text: chunk, classes });
  };
  for (const match of text.matchAll(SEQUENCE)) {
    push(text.slice(last, match.index));
    last = match.index + match[0].length;
    if (match[3] === 'm' && !match[2]) style = applySgr(style, match[1] ?? '');
  }
  push(text.slice(last));
  return segments;
}

function applySgr(current: Style, params: string): Style {
  const codes = params === '' ? [0] : params.split(/[;:]/).map((p) => (p === '' ? 0 : Number(p)));
  let style = { ...current };
  for (let i = 0; i < codes.length; i++) {
    const code = codes[i]!;
    if (code === 0) style = {};
    else if (code === 1) style.bold = true;
    else if (code === 2) style.dim = true;
    else if (code === 3) style.italic = true;
    else if (code === 4) style.underline = true;
    else if (code === 22) style.bold = style.dim = false;
    else if (code === 23) style.italic = false;
    else if (code === 24) style.underline = false;
    else if (code >= 30 && code <= 37) style.fg = String(code - 30);
    else if (code >= 90 && code <= 97) style.fg = String(code - 90 + 8);
    else if (code === 39) delete style.fg;
    else if (code >= 40 && code <= 47) style.bg = String(code - 40);
    else if (code >= 100 && code <= 107) style.bg = String(code - 100 + 8);
    else if (code === 49) delete style.bg;
    else if (code === 38 || code === 48) {
      // 256-colour (5;n) to the nearest of the 16; true colour (2;r;g;b) is skipped.
      const mode = codes[i + 1];
      const key = code === 38 ? 'fg' : 'bg';
      if (mode === 5) {
        const n = codes[i + 2] ?? 0;
        if (n < 16) style[key] = String(n);
        i += 2;
      } else if (mode === 2) i += 4;
    }
  }
  return style;
}

function classesOf(style: Style): string {
  const classes: string[] = [];
  if (style.fg) classes.push(`fg-${style.fg}`);
  if (style.bg) classes.push(`bg-${style.bg}`);
  if (style.bold) classes.push('bold');
  if (style.dim) classes.push('dim');
  if (style.italic) classes.push('italic');
  if (style.underline) classes.push('underline');
  return classes.join(' ');
}
