import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { Layout } from './layout.js';

/** Task log files kept open at most (a server runs far fewer tasks at once; the least recently written is closed past it). */
export const MAX_OPEN_TASK_LOGS = 256;

/** One task's log file: opening (its lines wait in `pending`, in order), then open (`fd`). */
interface LogFile {
  fd: number | undefined;
  /** Lines appended while the file was being opened: written, in order, before any later line. */
  pending: string[];
  /** The file is to be closed as soon as its open finishes and its pending lines are written. */
  closeWhenOpen: boolean;
  /** Settles once the open finished (or failed) and the pending lines are written. */
  opened: Promise<void>;
}

/**
 * The tasks' log files (`logs/<task>.log`), appended to. Each stays open while its task runs:
 * opening and closing the file for every line (the assigned line, each output batch, each
 * status line) was ~10% of a busy pool's server CPU (`npm run bench pool`). At most `maxOpen`
 * are open; the least recently written is closed first, and a task's file is closed when the
 * task ends (`close`).
 *
 * A file is opened (and made: `O_CREAT`) off the event loop: creating a file waits on the file
 * system's journal, and on a machine busy with other writes one synchronous open held a busy
 * pool's server for up to 300 ms. The lines appended meanwhile wait in memory, in order, and are
 * written when the open finishes, before any later line; once open, a line is written through
 * (`O_APPEND`, synchronously): it is in the file when `append` returns. A reader of the file
 * awaits `flushed` first (it then sees every line appended before it asked), and the server
 * awaits `closeAll` before it exits. Best effort: a log write never fails the transition or
 * report that committed before it (the data folder may be gone while the server closes).
 */
export class TaskLogs {
  /** Files by task id (open or opening), the least recently written first (a Map keeps insertion order). */
  private readonly files = new Map<string, LogFile>();

  constructor(
    private readonly layout: Pick<Layout, 'taskLog'>,
    private readonly maxOpen = MAX_OPEN_TASK_LOGS,
  ) {}

  /** How many log files are open (or being opened) and not being closed now. */
  get openCount(): number {
    let count = 0;
    for (const file of this.files.values()) if (!file.closeWhenOpen) count++;
    return count;
  }

  /** Whether the task's log file is open (or being opened) and not being closed now. */
  isOpen(taskId: string): boolean {
    const file = this.files.get(taskId);
    return file !== undefined && !file.closeWhenOpen;
  }

  append(taskId: string, text: string): void {
    if (text === '') return;
    let file = this.files.get(taskId);
    if (file === undefined) file = this.open(taskId);
    else {
      // Most recently written: last in the order.
      this.files.delete(taskId);
      this.files.set(taskId, file);
    }
    if (file.fd === undefined) {
      file.pending.push(text);
      file.closeWhenOpen = false;
      return;
    }
    this.write(taskId, file, text);
  }

  /** Settles once every line appended to the task's log so far is in its file (a reader awaits it before reading). */
  flushed(taskId: string): Promise<void> {
    return this.files.get(taskId)?.opened ?? Promise.resolve();
  }

  /** The task ended (or its attempt did): its file is closed (once its open finished); a later line opens it again. */
  close(taskId: string): void {
    const file = this.files.get(taskId);
    if (file === undefined) return;
    if (file.fd === undefined) {
      file.closeWhenOpen = true;
      return;
    }
    this.files.delete(taskId);
    try {
      fs.closeSync(file.fd);
    } catch {
      // already closed
    }
  }

  /** Closes every file, once the lines waiting for an open are written (the server stops). */
  async closeAll(): Promise<void> {
    const opening = [...this.files.values()].map((file) => file.opened);
    for (const taskId of [...this.files.keys()]) this.close(taskId);
    await Promise.all(opening);
  }

  private write(taskId: string, file: LogFile, text: string): void {
    try {
      const bytes = Buffer.from(text, 'utf8');
      for (let written = 0; written < bytes.length; ) written += fs.writeSync(file.fd!, bytes, written, bytes.length - written);
    } catch {
      // The data folder is gone (the server is closing), or the disk is full: the line is lost,
      // the file closed (the next line opens it again).
      this.close(taskId);
    }
  }

  /** Past `maxOpen` files open or opening, the least recently written is closed (one still opening: once its lines are written). */
  private makeRoom(): void {
    let live = this.openCount;
    for (const [taskId, file] of this.files) {
      if (live < this.maxOpen) return;
      if (file.closeWhenOpen) continue;
      live--;
      if (file.fd === undefined) file.closeWhenOpen = true;
      else this.close(taskId);
    }
  }

  private open(taskId: string): LogFile {
    this.makeRoom();
    const file: LogFile = { fd: undefined, pending: [], closeWhenOpen: false, opened: Promise.resolve() };
    this.files.set(taskId, file);
    file.opened = opener.open(this.layout.taskLog(taskId)).then(
      (fd) => {
        file.fd = fd;
        const lines = file.pending.join('');
        file.pending = [];
        if (lines) this.write(taskId, file, lines);
        if (file.closeWhenOpen && this.files.get(taskId) === file) this.close(taskId);
      },
      () => {
        // The logs folder cannot be made or the file opened (the data folder is gone): its lines are lost.
        file.pending = [];
        if (this.files.get(taskId) === file) this.files.delete(taskId);
      },
    );
    return file;
  }
}

/** Opens (and makes) a log file for appending, off the event loop; the logs folder is made at its first file. */
async function openForAppend(file: string): Promise<number> {
  const open = (): Promise<number> => new Promise((resolve, reject) => fs.open(file, 'a', (error, fd) => (error ? reject(error) : resolve(fd))));
  try {
    return await open();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    await fs.promises.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    return open();
  }
}

/** The opener's thread (CommonJS, run as given): opens (and makes) each file of a batch for appending, and answers the batch. */
const OPENER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const path = require('node:path');
function open(file) {
  try {
    return fs.openSync(file, 'a');
  } catch (error) {
    if (error.code !== 'ENOENT') throw error;
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    return fs.openSync(file, 'a');
  }
}
parentPort.on('message', (files) => {
  parentPort.postMessage(files.map((file) => {
    try {
      return { fd: open(file) };
    } catch (error) {
      return { code: error.code, message: error.message };
    }
  }));
});
`;

interface OpenRequest {
  file: string;
  resolve: (fd: number) => void;
  reject: (error: Error) => void;
}

/**
 * Opens log files on a thread of its own, a batch at a time: the files asked for while a batch is
 * being opened go in the next one. Each open handed to Node's thread pool woke one of its threads,
 * and on a machine with every core busy the woken thread ran its open (up to ~1 ms of the file
 * system's inode allocation here) on the event loop's time; a batch wakes a thread once. A file
 * descriptor is the process's: the event loop's thread writes and closes it. If the thread cannot
 * run, files are opened through the thread pool as before. One per process (`opener`), started at
 * its first open; it keeps the process alive only while a batch is in flight.
 */
export class FileOpener {
  private worker: Worker | undefined;
  private failed = false;
  private queued: OpenRequest[] = [];
  private inFlight: OpenRequest[] | undefined;

  /** `source`: the thread's code (a test gives one that fails, to see the thread pool take over). */
  constructor(private readonly source = OPENER_SOURCE) {}

  open(file: string): Promise<number> {
    if (this.failed) return openForAppend(file);
    return new Promise<number>((resolve, reject) => {
      this.queued.push({ file, resolve, reject });
      if (!this.inFlight) this.send();
    });
  }

  private send(): void {
    const batch = this.queued;
    this.queued = [];
    if (batch.length === 0) {
      this.inFlight = undefined;
      this.worker?.unref();
      return;
    }
    this.inFlight = batch;
    const worker = (this.worker ??= this.start());
    worker.ref(); // a batch in flight keeps the process (the server's close awaits its lines)
    worker.postMessage(batch.map((request) => request.file));
  }

  private start(): Worker {
    const worker = new Worker(this.source, { eval: true });
    worker.on('message', (answers: Array<{ fd?: number; code?: string; message?: string }>) => {
      const batch = this.inFlight ?? [];
      batch.forEach((request, i) => {
        const answer = answers[i];
        if (answer?.fd !== undefined) request.resolve(answer.fd);
        else request.reject(Object.assign(new Error(answer?.message ?? 'not opened'), { code: answer?.code }));
      });
      this.send();
    });
    const fallBack = (): void => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.failed = true;
      // What was asked of it is opened through the thread pool.
      const waiting = [...(this.inFlight ?? []), ...this.queued];
      this.inFlight = undefined;
      this.queued = [];
      for (const request of waiting) openForAppend(request.file).then(request.resolve, request.reject);
    };
    worker.on('error', fallBack);
    worker.on('exit', fallBack);
    return worker;
  }
}

/** The process's one log file opener (every `TaskLogs` shares it). */
const opener = new FileOpener();
