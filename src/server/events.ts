import type { ServerResponse } from 'node:http';
import type { StreamEvent } from '../api/schemas.js';
import { type DB, now, parseJson } from './db.js';
import type { RouteContext } from './http.js';

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

  constructor(private readonly db: DB) {
    this.insert = db.prepare('INSERT INTO events (job_id, task_id, project, type, data, at) VALUES (?, ?, ?, ?, ?, ?)');
  }

  append(event: { type: string; job_id?: string | null; task_id?: string | null; project?: string | null; data: unknown }): StoredEvent {
    const at = now();
    const info = this.insert.run(event.job_id ?? null, event.task_id ?? null, event.project ?? null, event.type, JSON.stringify(event.data ?? null), at);
    const stored: StoredEvent = { seq: Number(info.lastInsertRowid), type: event.type, job_id: event.job_id ?? null, task_id: event.task_id ?? null, project: event.project ?? null, data: event.data ?? null, at };
    for (const listener of this.listeners) listener(stored);
    return stored;
  }

  /** Events after `afterSeq` for one job, one project, or some jobs. */
  since(filter: EventFilter, afterSeq: number, limit = 10_000): StoredEvent[] {
    let rows: EventRow[];
    if (filter.jobIds) {
      const ids = [...filter.jobIds];
      rows = this.db.prepare(`SELECT * FROM events WHERE seq > ? AND job_id IN (${ids.map(() => '?').join(',')}) ORDER BY seq LIMIT ?`).all(afterSeq, ...ids, limit) as EventRow[];
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

export interface EventFilter {
  jobIds?: Set<string>;
  project?: string;
}

export function matches(filter: EventFilter, event: StoredEvent): boolean {
  if (filter.jobIds) return event.job_id !== null && filter.jobIds.has(event.job_id);
  if (filter.project) return event.project === filter.project;
  return false;
}

export interface SseOptions {
  filter: EventFilter;
  /** True once every event of the stream's subject has been written (the stream then ends). */
  finished: () => boolean;
  heartbeatMs: number;
}

/**
 * Serves an SSE stream: the backlog after Last-Event-ID (header or `?last_event_id=`), then
 * live events, each exactly once and in order, with `: ping` heartbeats.
 */
export function serveSse(ctx: RouteContext, log: EventLog, options: SseOptions): Promise<void> {
  const { req, res } = ctx;
  const header = req.headers['last-event-id'];
  const lastEventId = Number((Array.isArray(header) ? header[0] : header) ?? ctx.query.get('last_event_id') ?? 0) || 0;
  res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache, no-transform', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
  res.write('retry: 1000\n\n');
  let lastSent = lastEventId;
  let live = false;
  const buffered: StoredEvent[] = [];
  return new Promise((resolve) => {
    const send = (event: StoredEvent): void => {
      if (event.seq <= lastSent) return;
      lastSent = event.seq;
      writeEvent(res, event);
    };
    const finishIfDone = (): boolean => {
      if (!options.finished()) return false;
      // Anything committed before the subject finished is in the table: send what is left.
      for (const event of log.since(options.filter, lastSent)) send(event);
      res.write(`event: end\ndata: {}\n\n`);
      close();
      return true;
    };
    const unsubscribe = log.subscribe((event) => {
      if (!matches(options.filter, event)) return;
      if (!live) buffered.push(event);
      else {
        send(event);
        finishIfDone();
      }
    });
    const heartbeat = setInterval(() => res.write(': ping\n\n'), options.heartbeatMs);
    let closed = false;
    const close = (): void => {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      unsubscribe();
      res.end();
      resolve();
    };
    req.on('close', close);
    res.on('error', close);
    // Subscribed first, then the backlog: nothing falls between the two.
    for (;;) {
      const batch = log.since(options.filter, lastSent, 1000);
      for (const event of batch) send(event);
      if (batch.length < 1000) break;
    }
    for (const event of buffered.splice(0)) send(event);
    live = true;
    finishIfDone();
  });
}

function writeEvent(res: ServerResponse, event: StoredEvent): void {
  const data: StreamEvent = { type: event.type, job_id: event.job_id, task_id: event.task_id, project: event.project, data: event.data, at: event.at };
  res.write(`id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(data)}\n\n`);
}
