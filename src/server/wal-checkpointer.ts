import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { DB } from './db.js';

/** How often the checkpointer copies the WAL's committed pages into the database file. */
export const CHECKPOINT_EVERY_MS = 500;
/** SQLite's own default: what the server's connection goes back to if the checkpointer stops. */
const DEFAULT_AUTOCHECKPOINT_PAGES = 1000;

/**
 * The checkpointer's thread (CommonJS, run as given): its own connection to the database, a
 * PASSIVE checkpoint on a timer (it never waits for, nor blocks, the server's reads and writes),
 * a last one when told to stop.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file);
db.pragma('busy_timeout = 5000');
const checkpoint = () => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (error) {
    parentPort.postMessage({ failed: String((error && error.message) || error) });
  }
};
const timer = setInterval(checkpoint, workerData.everyMs);
parentPort.on('message', (message) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  checkpoint();
  db.close();
  parentPort.close();
});
parentPort.postMessage({ ready: true });
`;

/**
 * Moves SQLite's WAL checkpoints off the event loop. By default the connection that commits
 * copies the WAL into the database file every 1,000 pages, inside that commit, and syncs both
 * files: on a machine busy with other writes one such commit held a busy pool's server for up
 * to 140 ms (`npm run bench pool`: 200 machines, three commits per task). Here a thread of its
 * own does it on a timer, with its own connection; the server's connection stops checkpointing
 * only once that thread runs, and takes it up again if the thread fails or stops. A checkpoint
 * never changes what a commit made durable (WAL mode: a committed transaction is in the WAL).
 */
export class WalCheckpointer {
  private worker: Worker | undefined;
  private stopped = false;

  constructor(
    private readonly db: DB,
    private readonly file: string,
    private readonly log: (line: string) => void,
    private readonly everyMs = CHECKPOINT_EVERY_MS,
  ) {}

  /** Resolves once the thread runs and the server's connection no longer checkpoints (or, if it cannot start, still does). */
  start(): Promise<void> {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { driver, file: this.file, everyMs: this.everyMs } });
    this.worker = worker;
    worker.unref();
    return new Promise<void>((resolve) => {
      worker.on('message', (message: { ready?: boolean; failed?: string }) => {
        if (message.ready && !this.stopped) {
          this.db.pragma('wal_autocheckpoint = 0');
          resolve();
        }
        if (message.failed) this.log(`database checkpoint failed (the next one tries again): ${message.failed}`);
      });
      const fallBack = (why: string): void => {
        if (this.worker !== worker) return;
        this.worker = undefined;
        this.autocheckpoint();
        if (!this.stopped) this.log(`database checkpoints are made by the server's own connection again: ${why}`);
        resolve();
      };
      worker.on('error', (error) => fallBack(error.message));
      worker.on('exit', (code) => fallBack(`the checkpoint thread exited (${code})`));
    });
  }

  /** Stops the thread after a last checkpoint; the server's connection checkpoints again (its close makes the last one). */
  async stop(): Promise<void> {
    this.stopped = true;
    const worker = this.worker;
    if (!worker) return;
    worker.ref(); // the process waits for the last checkpoint
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage('stop');
    await exited;
  }

  private autocheckpoint(): void {
    try {
      if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${DEFAULT_AUTOCHECKPOINT_PAGES}`);
    } catch {
      // closed meanwhile
    }
  }
}
