import type { StreamEvent } from '../../api/schemas.js';
import { unavailable } from '../errors.js';
import { type EventFilter, type EventLog, matches, type StoredEvent } from '../events.js';
import type { RouteContext } from './router.js';

/*
 * The HTTP side of the event log: Server-Sent Events streams over a request's connection, and the
 * gate that caps how many are open. The log itself (events.ts) knows nothing of HTTP.
 */

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
      throw unavailable('too_many_streams', `this server serves at most ${this.limits.maxStreams} event streams at once: close one, or retry shortly`);
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
