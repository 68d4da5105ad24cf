import { StringDecoder } from 'node:string_decoder';

/** The runner protocol's progress marker on stdout. */
export const PROGRESS_PREFIX = 'COMPUTALOT_PROGRESS:';

export interface ProgressEvent {
  /** The parsed JSON, or the raw text when it is not JSON. */
  data: unknown;
  raw: string;
}

/**
 * Splits a stream into lines that start with a marker and everything else, without delaying
 * output: a partial line is passed on at once unless it could still become a marked line.
 * `onMarked` gets a marked line's text after the marker, without its line ending.
 */
export class MarkedLineFilter {
  /** A marked line is held until its end up to this many characters; past that it is output (a job cannot make the host hold more). */
  static readonly MAX_MARKED_LINE = 1024 * 1024;
  private pending = '';
  /** The current line was already (partly) passed through: the rest of it is output too. */
  private passing = false;
  /** Keeps a character split across two chunks whole. */
  private readonly decoder = new StringDecoder('utf8');

  constructor(
    private readonly marker: string,
    private readonly onOutput: (text: string) => void,
    private readonly onMarked: (rest: string) => void,
  ) {}

  push(chunk: Buffer | string): void {
    let text = this.pending + (typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
    this.pending = '';
    for (;;) {
      const newline = text.indexOf('\n');
      if (newline < 0) break;
      const line = text.slice(0, newline + 1);
      text = text.slice(newline + 1);
      if (!this.passing && line.startsWith(this.marker)) this.onMarked(line.slice(this.marker.length).replace(/\r?\n$/, ''));
      else this.onOutput(line);
      this.passing = false;
    }
    if (text === '') return;
    if (this.passing) this.onOutput(text);
    else if ((this.marker.startsWith(text) || text.startsWith(this.marker)) && text.length <= MarkedLineFilter.MAX_MARKED_LINE) this.pending = text;
    else {
      this.onOutput(text);
      this.passing = true;
    }
  }

  /** At the end of the stream: a marked line without a newline still counts. */
  flush(): void {
    this.pending += this.decoder.end();
    if (this.pending.startsWith(this.marker)) this.onMarked(this.pending.slice(this.marker.length));
    else if (this.pending) this.onOutput(this.pending);
    this.pending = '';
    this.passing = false;
  }
}

/** Splits a task's stdout into progress reports and everything else (see MarkedLineFilter). */
export class ProgressFilter extends MarkedLineFilter {
  constructor(onOutput: (text: string) => void, onProgress: (event: ProgressEvent) => void) {
    super(PROGRESS_PREFIX, onOutput, (raw) => onProgress(parseProgress(raw)));
  }
}

function parseProgress(raw: string): ProgressEvent {
  try {
    return { data: JSON.parse(raw), raw };
  } catch {
    return { data: raw, raw };
  }
}
