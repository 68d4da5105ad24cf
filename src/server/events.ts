import type { StreamEvent } from '../api/schemas.js';
import type { Clock } from '../context.js';
import { type DB, parseJson, timestamp } from './db.js';
import { HttpError, type RouteContext } from './http.js';

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
  private readonly insert;
  /** Events recorded in the open transaction, told to listeners once it commits. */
  private pending: StoredEvent[] | undefined;

  /** `clock`: where events' times come from (the system's clock unless set). */
  constructor(
    private readonly db: DB,
    private readonly clock?: Clock,
  ) {
    this.insert = db.prepare('INSERT INTO events (job_id, task_id, project, type, data, at) VALUES (?, ?, ?, ?, ?, ?)');
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
      result = this.db.transaction(() => change(this.record))();
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
    } else if (filter.project) {
      rows = this.db.prepare('SELECT * FROM events WHERE seq > ? AND project = ? ORDER BY seq LIMIT ?').all(afterSeq, filter.project, limit) as EventRow[];
    } else rows = [];
    return rows.map((row) => ({ ...row, data: parseJson(row.data, null) }));
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
}

export function matches(filter: EventFilter, event: StoredEvent): boolean {
  if (filter.jobIds) return event.job_id !== null && filter.jobIds.has(event.job_id);
  if (filter.project) return event.project === filter.project;
  return false;
}

/** Counts open SSE streams against a cap, and holds the limits every stream applies. */
export class StreamGate {
  private open = 0;

  constructor(
    readonly limits: { maxStreams: number; streamStallMs: number; streamMaxBufferedBytes: number },
    readonly log: (line: string) => void,
  ) {}

  /** Takes a slot, or answers 503 (with Retry-After) when every slot is taken. */
  acquire(): () => void {
    if (this.open >= this.limits.maxStreams) {
      throw new HttpError(503, 'too_many_streams', `this server serves at most ${this.limits.maxStreams} event streams at once: close one, or retry shortly`);
    }
    this.open++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.open--;
    };
  }
}

export interface SseOptions {
  filter: EventFilter;
  /** True once every event of the stream's subject has been written (the stream then ends). */
  finished: () => boolean;
  heartbeatMs: number;
  gate: StreamGate;
}

/** Events read from the table at a time while a stream catches up: what a paused stream holds in memory at most. */
const CATCH_UP_BATCH = 16;

/**
 * Serves an SSE stream: the backlog after Last-Event-ID (header or `?last_event_id=`), then
 * live events, each exactly once and in order, with `: ping` heartbeats.
 *
 * Every event is in the table before it is announced, so a stream never queues events for a
 * slow client: when `write()` says the client's buffer is full, the stream stops writing and,
 * once the buffer drains, reads on from the table where it stopped. A client whose buffer does
 * not drain within `streamStallMs` (or that somehow holds over `streamMaxBufferedBytes`) is dropped.
 */
export function serveSse(ctx: RouteContext, log: EventLog, options: SseOptions): Promise<void> {
  const { req, res } = ctx;
  const { limits } = options.gate;
  const header = req.headers['last-event-id'];
  const lastEventId = Number((Array.isArray(header) ? header[0] : header) ?? ctx.query.get('last_event_id') ?? 0) || 0;
  const release = options.gate.acquire();
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-cache, no-transform',
    Connection: 'keep-alive',
    'X-Accel-Buffering': 'no',
  });
  let lastSent = lastEventId;
  /** Everything in the table up to now is written: live events can go straight out. */
  let caughtUp = false;
  let waitingForDrain = false;
  let closed = false;
  let stallTimer: NodeJS.Timeout | undefined;
  /** Read from the table, not yet written (the client's buffer filled up in the middle of a batch). */
  let pending: StoredEvent[] = [];
  return new Promise((resolve) => {
    const close = (): void => {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      clearTimeout(stallTimer);
      unsubscribe();
      release();
      res.end();
      resolve();
    };
    const drop = (why: string): void => {
      if (closed) return;
      options.gate.log(`dropped an event stream client: ${why}`);
      close();
      res.destroy();
    };
    /** Writes; false when the stream must wait for the client (or was dropped). */
    const write = (text: string): boolean => {
      const ok = res.write(text);
      if (res.writableLength > limits.streamMaxBufferedBytes) {
        drop(`over ${limits.streamMaxBufferedBytes} bytes waiting for it`);
        return false;
      }
      if (!ok) {
        waitingForDrain = true;
        caughtUp = false;
        stallTimer = setTimeout(() => drop(`it read nothing for ${Math.round(limits.streamStallMs / 1000)} s`), limits.streamStallMs);
        res.once('drain', () => {
          clearTimeout(stallTimer);
          waitingForDrain = false;
          catchUp();
        });
      }
      return ok;
    };
    const send = (event: StoredEvent): boolean => {
      if (event.seq <= lastSent) return true;
      lastSent = event.seq;
      return write(formatEvent(event));
    };
    /** Writes what the table has after `lastSent` until the client's buffer is full or nothing is left; ends a finished subject's stream. */
    const catchUp = (): void => {
      for (;;) {
        if (closed || waitingForDrain) return;
        const full = pending.length === 0;
        const batch = full ? log.since(options.filter, lastSent, CATCH_UP_BATCH) : pending;
        pending = [];
        for (const [i, event] of batch.entries()) {
          if (send(event)) continue;
          pending = batch.slice(i + 1);
          return;
        }
        if (full && batch.length < CATCH_UP_BATCH) break;
      }
      caughtUp = true;
      // Anything committed before the subject finished is in the table, and has just been written.
      if (options.finished()) {
        res.write('event: end\ndata: {}\n\n');
        close();
      }
    };
    const unsubscribe = log.subscribe((event) => {
      if (closed || !caughtUp || waitingForDrain || !matches(options.filter, event)) return; // the table has it for later
      if (send(event) && options.finished()) catchUp();
    });
    const heartbeat = setInterval(() => {
      if (!waitingForDrain) write(': ping\n\n');
    }, options.heartbeatMs);
    req.on('close', close);
    res.on('close', close);
    res.on('error', close);
    // Subscribed first, then the backlog: nothing falls between the two.
    if (write('retry: 1000\n\n')) catchUp();
  });
}

function formatEvent(event: StoredEvent): string {
  const data: StreamEvent = { type: event.type, job_id: event.job_id, task_id: event.task_id, project: event.project, data: event.data, at: event.at };
  return `id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(data)}\n\n`;
}
