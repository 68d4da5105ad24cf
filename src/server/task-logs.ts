import fs from 'node:fs';
import path from 'node:path';
import type { Layout } from './layout.js';

/** Task log files kept open at most (a server runs far fewer tasks at once; the least recently written is closed past it). */
export const MAX_OPEN_TASK_LOGS = 256;

/**
 * The tasks' log files (`logs/<task>.log`), appended to. Each stays open while its task runs:
 * opening and closing the file for every line (the assigned line, each output batch, each
 * status line) was ~10% of a busy pool's server CPU (`npm run bench pool`). At most `maxOpen`
 * are open; the least recently written is closed first, and a task's file is closed when the
 * task ends (`close`). Writes are synchronous appends (`O_APPEND`) as before: what was written
 * is in the file once `append` returns, so a `kill -9` loses no line that a plain append would
 * have kept. Best effort: a log write never fails the transition or report that committed
 * before it (the data folder may be gone while the server closes).
 */
export class TaskLogs {
  /** Open files by task id, the least recently written first (a Map keeps insertion order). */
  private readonly files = new Map<string, number>();

  constructor(
    private readonly layout: Pick<Layout, 'taskLog'>,
    private readonly maxOpen = MAX_OPEN_TASK_LOGS,
  ) {}

  /** How many log files are open now. */
  get openCount(): number {
    return this.files.size;
  }

  /** Whether the task's log file is open now. */
  isOpen(taskId: string): boolean {
    return this.files.has(taskId);
  }

  append(taskId: string, text: string): void {
    if (text === '') return;
    let fd = this.files.get(taskId);
    try {
      if (fd === undefined) fd = this.open(taskId);
      else {
        // Most recently written: last in the order.
        this.files.delete(taskId);
        this.files.set(taskId, fd);
      }
      const bytes = Buffer.from(text, 'utf8');
      for (let written = 0; written < bytes.length; ) written += fs.writeSync(fd, bytes, written, bytes.length - written);
    } catch {
      // The data folder is gone (the server is closing), or the disk is full: the line is lost,
      // the file closed (the next line opens it again).
      if (fd !== undefined) this.close(taskId);
    }
  }

  /** The task ended (or its attempt did): its file is closed; a later line opens it again. */
  close(taskId: string): void {
    const fd = this.files.get(taskId);
    if (fd === undefined) return;
    this.files.delete(taskId);
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
  }

  /** Closes every file (the server stops). */
  closeAll(): void {
    for (const taskId of [...this.files.keys()]) this.close(taskId);
  }

  private open(taskId: string): number {
    const file = this.layout.taskLog(taskId);
    let fd: number;
    try {
      fd = fs.openSync(file, 'a');
    } catch (error) {
      // The logs folder is made at the first line (not checked on every line: a busy pool appends many).
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      fd = fs.openSync(file, 'a');
    }
    while (this.files.size >= this.maxOpen) {
      const oldest = this.files.keys().next().value as string;
      this.close(oldest);
    }
    this.files.set(taskId, fd);
    return fd;
  }
}
