import type { StreamEvent } from '../api/schemas.js';
import type { Clock } from '../context.js';
import { type DB, parseJson, timestamp } from './db.js';

export interface StoredEvent extends StreamEvent {
  seq: number;
}

interface EventRow {
  seq: number;
  job_id: string | null;
  task_id: string | null;
  project: string | null;
  type: string;
  data: string;
  at: string;
}

/**
 * Every state change as a numbered event, in SQLite (so a stream can resume after a reconnect
 * or a server restart) and to live subscribers.
 */
export class EventLog {
  private readonly listeners = new Set<(event: StoredEvent) => void>();
  private readonly rollbackListeners = new Set<() => void>();
  private readonly insert;
  /** Runs a change in a transaction: made once (better-sqlite3 builds a wrapper per `db.transaction` call, ~2% of a busy pool's server). */
  private readonly inTransaction: <T>(change: (record: RecordEvent) => T) => T;
  /** Events recorded in the open transaction, told to listeners once it commits. */
  private pending: StoredEvent[] | undefined;

  /** `clock`: where events' times come from (the system's clock unless set). */
  constructor(
    private readonly db: DB,
    private readonly clock?: Clock,
  ) {
    this.insert = db.prepare('INSERT INTO events (job_id, task_id, project, type, data, at) VALUES (?, ?, ?, ?, ?, ?)');
    this.inTransaction = db.transaction((change: (record: RecordEvent) => unknown) => change(this.record)) as <T>(change: (record: RecordEvent) => T) => T;
  }

  /** Records one event in a transaction of its own, and tells listeners after the commit. */
  append(event: NewEvent): StoredEvent {
    return this.transaction((record) => record(event));
  }

  /**
   * Runs `change` in one transaction with the events it records: both commit or neither does,
   * and listeners hear of the events only after the commit (a listener reading the database then
   * sees the state the event describes). Nested calls join the outer transaction.
   */
  transaction<T>(change: (record: RecordEvent) => T): T {
    if (this.pending) return change(this.record);
    const pending: StoredEvent[] = [];
    this.pending = pending;
    let result: T;
    try {
      result = this.inTransaction(change);
    } catch (error) {
      for (const listener of this.rollbackListeners) listener();
      throw error;
    } finally {
      this.pending = undefined;
    }
    for (const event of pending) for (const listener of this.listeners) listener(event);
    return result;
  }

  private readonly record = (event: NewEvent): StoredEvent => {
    if (!this.pending) throw new Error('EventLog: an event recorded outside EventLog.transaction');
    const at = timestamp(this.clock);
    const info = this.insert.run(event.job_id ?? null, event.task_id ?? null, event.project ?? null, event.type, JSON.stringify(event.data ?? null), at);
    const stored: StoredEvent = {
      seq: Number(info.lastInsertRowid),
      type: event.type,
      job_id: event.job_id ?? null,
      task_id: event.task_id ?? null,
      project: event.project ?? null,
      data: event.data ?? null,
      at,
    };
    this.pending.push(stored);
    return stored;
  };

  /** Events after `afterSeq` for one job, one project, or some jobs. */
  since(filter: EventFilter, afterSeq: number, limit = 10_000): StoredEvent[] {
    let rows: EventRow[];
    if (filter.jobIds) {
      const ids = [...filter.jobIds];
      rows = this.db
        .prepare(`SELECT * FROM events WHERE seq > ? AND job_id IN (${ids.map(() => '?').join(',')}) ORDER BY seq LIMIT ?`)
        .all(afterSeq, ...ids, limit) as EventRow[];
    } else if (filter.jobsActivity) {
      rows = this.db
        .prepare(`SELECT * FROM events WHERE seq > ? AND type IN ('job', 'task') AND job_id IS NOT NULL ORDER BY seq LIMIT ?`)
        .all(afterSeq, limit) as EventRow[];
    } else if (filter.project) {
      rows = this.db.prepare('SELECT * FROM events WHERE seq > ? AND project = ? ORDER BY seq LIMIT ?').all(afterSeq, filter.project, limit) as EventRow[];
    } else rows = [];
    return rows.map((row) => ({ ...row, data: parseJson(row.data, null) }));
  }

  /** The newest event's number (0 when there is none): where a stream opened now should start. */
  lastSeq(): number {
    return (this.db.prepare('SELECT MAX(seq) AS seq FROM events').get() as { seq: number | null }).seq ?? 0;
  }

  /** Heard when a transaction of `transaction` rolled back (what was kept in memory about its changes is stale). */
  onRollback(listener: () => void): () => void {
    this.rollbackListeners.add(listener);
    return () => this.rollbackListeners.delete(listener);
  }

  subscribe(listener: (event: StoredEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** Retention (`cycle server-gc`): a finished job's events go (its job and task rows stay). */
export function deleteJobEvents(db: DB, jobId: string): void {
  db.prepare('DELETE FROM events WHERE job_id = ?').run(jobId);
}

export type RecordEvent = (event: NewEvent) => StoredEvent;

export interface NewEvent {
  type: string;
  job_id?: string | null;
  task_id?: string | null;
  project?: string | null;
  data: unknown;
}

export interface EventFilter {
  jobIds?: Set<string>;
  project?: string;
  /** Every job's `job` and `task` events (status changes and counts; no output or progress): the jobs list's stream. */
  jobsActivity?: boolean;
}

export function matches(filter: EventFilter, event: StoredEvent): boolean {
  if (filter.jobIds) return event.job_id !== null && filter.jobIds.has(event.job_id);
  if (filter.jobsActivity) return event.job_id !== null && (event.type === 'job' || event.type === 'task');
  if (filter.project) return event.project === filter.project;
  return false;
}
