import { describe, expect, it } from 'vitest';
import { colorEnabled, interactiveEnabled } from '../../src/ui/streams.js';
import { Ui, formatBytes, formatDuration, formatTable } from '../../src/ui/ui.js';
import { Capture } from '../helpers/context.js';
import { PassThrough } from 'node:stream';

const tty = { write: () => true, isTTY: true };
const pipe = { write: () => true, isTTY: false };

describe('colour and interactivity', () => {
  it('colour only on a TTY, and never with NO_COLOR, CI, TERM=dumb or --no-color', () => {
    expect(colorEnabled(tty, {}, undefined)).toBe(true);
    expect(colorEnabled(pipe, {}, undefined)).toBe(false);
    expect(colorEnabled(tty, { NO_COLOR: '1' }, undefined)).toBe(false);
    expect(colorEnabled(tty, { CI: 'true' }, undefined)).toBe(false);
    expect(colorEnabled(tty, { TERM: 'dumb' }, undefined)).toBe(false);
    expect(colorEnabled(tty, {}, false)).toBe(false);
    expect(colorEnabled(pipe, { FORCE_COLOR: '1' }, undefined)).toBe(true);
  });

  it('spinners and live lines only for a person at a terminal', () => {
    const stdin = Object.assign(new PassThrough(), { isTTY: true });
    expect(interactiveEnabled({ stdout: tty, stderr: tty, stdin }, {})).toBe(true);
    expect(interactiveEnabled({ stdout: tty, stderr: tty, stdin }, { CI: '1' })).toBe(false);
    expect(interactiveEnabled({ stdout: tty, stderr: pipe, stdin }, {})).toBe(false);
  });

  it('without a TTY a spinner prints its text once and no escape codes', async () => {
    const stderr = new Capture();
    const ui = new Ui({ stdout: new Capture(), stderr, stdin: new PassThrough() }, { color: false, quiet: false, debug: false, interactive: false });
    const spinner = await ui.spinner('building');
    spinner.update('still building');
    spinner.succeed('built');
    ui.live('50%');
    expect(stderr.text).toBe('building\n✓ built\n');
  });

  it('data goes to stdout, progress to stderr; --quiet keeps data and warnings', () => {
    const stdout = new Capture();
    const stderr = new Capture();
    const ui = new Ui({ stdout, stderr, stdin: new PassThrough() }, { color: false, quiet: true, debug: false, interactive: false });
    ui.out('data');
    ui.info('progress');
    ui.warn('careful');
    expect(stdout.text).toBe('data\n');
    expect(stderr.text).toBe('warning: careful\n');
  });
});

describe('formatting', () => {
  it('tables, bytes, durations', () => {
    expect(
      formatTable(
        ['ID', 'STATUS'],
        [
          ['a', 'ok'],
          ['long-id', 'failed'],
        ],
      ),
    ).toBe('ID       STATUS\na        ok\nlong-id  failed');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(1024 ** 3)).toBe('1.0 GiB');
    expect(formatDuration(250)).toBe('250ms');
    expect(formatDuration(61_000)).toBe('1m01s');
  });
});
