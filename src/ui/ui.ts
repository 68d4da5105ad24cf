import { escapeForTerminal, escapeStreamForTerminal } from './escape.js';
import type { IO } from './streams.js';
export { escapeForTerminal, escapeStreamForTerminal } from './escape.js';

/** The colours cycle uses; identity functions when colour is off (chalk is then never loaded). */
export interface Palette {
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
  cyan(text: string): string;
  bold(text: string): string;
  dim(text: string): string;
}

const plain = (text: string): string => text;
export const noColors: Palette = { red: plain, green: plain, yellow: plain, cyan: plain, bold: plain, dim: plain };

/** chalk (level 1, 16 colours) as a Palette; imported only when colour is on. */
export async function chalkPalette(): Promise<Palette> {
  const { Chalk } = await import('chalk');
  return new Chalk({ level: 1 });
}

export interface UiOptions {
  color: boolean;
  quiet: boolean;
  debug: boolean;
  /** A person at a terminal: spinners and live progress lines allowed. */
  interactive: boolean;
}

export interface Spinner {
  update(text: string): void;
  succeed(text?: string): void;
  fail(text?: string): void;
  stop(): void;
}

/**
 * All terminal output goes through here: data to stdout, everything else to stderr.
 * Colour, spinners and live lines switch off by themselves when not at a TTY.
 */
export class Ui {
  private liveLineShown = false;
  private liveBlockLines = 0;

  constructor(
    private readonly io: IO,
    readonly options: UiOptions,
    readonly c: Palette = noColors,
  ) {}

  /**
   * A line of data on stdout (what scripts capture). On a terminal, control characters and escape
   * sequences other than colours are shown escaped: much of what is printed comes from a server.
   */
  out(line = ''): void {
    this.clearLive();
    this.io.stdout.write(this.io.stdout.isTTY ? escapeForTerminal(line) + '\n' : line + '\n');
  }

  /** One JSON document on stdout. */
  json(document: unknown): void {
    this.clearLive();
    this.io.stdout.write(JSON.stringify(document, null, 2) + '\n');
  }

  /** One JSON line on stdout (streams of events). */
  jsonLine(document: unknown): void {
    this.clearLive();
    this.io.stdout.write(JSON.stringify(document) + '\n');
  }

  /** Progress and diagnostics on stderr; silenced by --quiet. */
  info(line: string): void {
    if (this.options.quiet) return;
    this.clearLive();
    this.io.stderr.write(this.forStderr(line) + '\n');
  }

  private forStderr(text: string): string {
    return this.io.stderr.isTTY ? escapeForTerminal(text) : text;
  }

  success(line: string): void {
    this.info(`${this.c.green('✓')} ${line}`);
  }

  /** Warnings show even with --quiet: they are about the user's data. */
  warn(line: string): void {
    this.clearLive();
    this.io.stderr.write(`${this.c.yellow('warning:')} ${this.forStderr(line)}\n`);
  }

  /** With --debug: a line with the time since the process started, to see where time goes. */
  debug(line: string): void {
    if (!this.options.debug) return;
    this.clearLive();
    this.io.stderr.write(this.c.dim(`debug +${Math.round(performance.now())}ms: ${this.forStderr(line)}`) + '\n');
  }

  /**
   * A program's own output to stderr (a job's stderr, build output): as it is, but on a terminal
   * with the sequences that make the terminal act (titles, clipboard, links, reports) escaped.
   */
  rawErr(chunk: string | Uint8Array): void {
    this.clearLive();
    this.io.stderr.write(this.io.stderr.isTTY ? escapeStreamForTerminal(chunk) : chunk);
  }

  /** A program's own output to stdout (a job's stdout): as rawErr. */
  rawOut(chunk: string | Uint8Array): void {
    this.clearLive();
    this.io.stdout.write(this.io.stdout.isTTY ? escapeStreamForTerminal(chunk) : chunk);
  }

  /**
   * A single status line rewritten in place on a TTY (progress bars, COMPUTALOT_PROGRESS).
   * Not interactive: nothing is printed; callers print discrete lines instead.
   */
  live(text: string): void {
    if (!this.options.interactive || this.options.quiet) return;
    const width = Math.max(20, (this.io.stderr.columns ?? 80) - 1);
    const line = text.length > width ? text.slice(0, width - 1) + '…' : text;
    this.io.stderr.write(`\r\x1b[2K${line}`);
    this.liveLineShown = true;
  }

  clearLive(): void {
    if (this.liveBlockLines > 0) {
      this.io.stderr.write(`\x1b[${this.liveBlockLines}F\x1b[0J`);
      this.liveBlockLines = 0;
    }
    if (!this.liveLineShown) return;
    this.io.stderr.write('\r\x1b[2K');
    this.liveLineShown = false;
  }

  /** Several status lines rewritten in place on a TTY (`job watch` of many jobs). */
  liveBlock(lines: string[]): void {
    if (!this.options.interactive || this.options.quiet) return;
    const width = Math.max(20, (this.io.stderr.columns ?? 80) - 1);
    const previous = this.liveBlockLines;
    const text = lines.map((line) => `\x1b[2K${line.length > width ? line.slice(0, width - 1) + '…' : line}`).join('\n') + '\n';
    this.io.stderr.write((previous > 0 ? `\x1b[${previous}F` : '') + text + (previous > lines.length ? '\x1b[0J' : ''));
    this.liveBlockLines = lines.length;
  }

  /** A spinner on a TTY; elsewhere the text once (unless --quiet) and the outcome line. */
  async spinner(text: string): Promise<Spinner> {
    if (this.options.interactive && !this.options.quiet && this.options.color) {
      const { default: ora } = await import('ora');
      const spinner = ora({ text, stream: this.io.stderr as NodeJS.WritableStream }).start();
      return {
        update: (next) => {
          spinner.text = next;
        },
        succeed: (final) => {
          spinner.succeed(final);
        },
        fail: (final) => {
          spinner.fail(final);
        },
        stop: () => {
          spinner.stop();
        },
      };
    }
    this.info(text);
    return {
      update: () => undefined,
      succeed: (final) => {
        if (final !== undefined) this.success(final);
      },
      fail: (final) => {
        if (final !== undefined) this.info(`${this.c.red('✗')} ${final}`);
      },
      stop: () => undefined,
    };
  }
}

/** Left-aligned columns; the last column is not padded. */
export function formatTable(headers: string[], rows: string[][]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, col) => Math.max(...all.map((row) => visibleLength(row[col] ?? ''))));
  return all
    .map((row) =>
      row
        .map((cell, col) => (col === row.length - 1 ? cell : cell + ' '.repeat(widths[col]! - visibleLength(cell))))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function visibleLength(text: string): number {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, '').length;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds - minutes * 60);
  if (minutes < 60) return `${minutes}m${String(rest).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

/** An upload's progress bar: bytes sent of the total, the rate and the time left. */
export function transferLine(sent: number, total: number, elapsedMs: number): string {
  const rate = elapsedMs > 0 ? sent / (elapsedMs / 1000) : 0;
  const eta = rate > 0 ? (total - sent) / rate : 0;
  const width = 24;
  // A file that grows while it is sent can take `sent` past `total`: the bar stays full.
  const filled = Math.min(width, Math.round((sent / Math.max(total, 1)) * width));
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${formatBytes(sent)} / ${formatBytes(total)}  ${formatBytes(rate)}/s  ETA ${formatDuration(eta * 1000)}`;
}
