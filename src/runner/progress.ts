import { StringDecoder } from 'node:string_decoder';

/** The runner protocol's progress marker on stdout. */
export const PROGRESS_PREFIX = 'COMPUTALOT_PROGRESS:';

export interface ProgressEvent {
  /** The parsed JSON, or the raw text when it is not JSON. */
  data: unknown;
  raw: string;
}

/**
 * Splits a task's stdout into progress reports and everything else, without delaying output:
 * a partial line is passed on at once unless it could still become a progress line.
 */
export class ProgressFilter {
  private pending = '';
  /** The current line was already (partly) passed through: the rest of it is output too. */
  private passing = false;
  /** Keeps a character split across two chunks whole. */
  private readonly decoder = new StringDecoder('utf8');

  constructor(
    private readonly onOutput: (text: string) => void,
    private readonly onProgress: (event: ProgressEvent) => void,
  ) {}

  push(chunk: Buffer | string): void {
    let text = this.pending + (typeof chunk === 'string' ? chunk : this.decoder.write(chunk));
    this.pending = '';
    for (;;) {
      const newline = text.indexOf('\n');
      if (newline < 0) break;
      const line = text.slice(0, newline + 1);
      text = text.slice(newline + 1);
      if (!this.passing && line.startsWith(PROGRESS_PREFIX)) this.emitProgress(line.slice(PROGRESS_PREFIX.length).replace(/\r?\n$/, ''));
      else this.onOutput(line);
      this.passing = false;
    }
    if (text === '') return;
    if (this.passing) this.onOutput(text);
    else if (PROGRESS_PREFIX.startsWith(text) || text.startsWith(PROGRESS_PREFIX)) this.pending = text;
    else {
      this.onOutput(text);
      this.passing = true;
    }
  }

  /** At the end of the stream: a progress line without a newline still counts. */
  flush(): void {
    this.pending += this.decoder.end();
    if (this.pending.startsWith(PROGRESS_PREFIX)) this.emitProgress(this.pending.slice(PROGRESS_PREFIX.length));
    else if (this.pending) this.onOutput(this.pending);
    this.pending = '';
    this.passing = false;
  }

  private emitProgress(raw: string): void {
    let data: unknown = raw;
    try {
      data = JSON.parse(raw);
    } catch {
      data = raw;
    }
    this.onProgress({ data, raw });
  }
}
