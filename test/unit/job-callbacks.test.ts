import { afterEach, describe, expect, it } from 'vitest';
import type { Job } from '../../src/api/schemas.js';
import { JobCallbacks, callbackDeliveryId } from '../../src/server/callbacks.js';
import { type DB, openDatabase } from '../../src/server/db.js';
import { EventLog } from '../../src/server/events.js';
import type { JobRow } from '../../src/server/jobs.js';
import { layout } from '../../src/server/layout.js';
import { JobStates } from '../../src/server/state.js';
import { manualClock, tempDir } from '../helpers/context.js';

/**
 * `JobCallbacks` alone (docs/design.md, "Job callbacks"): a temporary database, a fake HTTP
 * client whose answers the test gives, a manual clock for the backoff and the stop's grace. A
 * restart is a second `JobCallbacks` on the same database after the first one stopped (or, for
 * a crash, was dropped without stopping).
 */

const URL = 'http://127.0.0.1:9/done';
const GRACE_MS = 3_000;

interface Sent {
  delivery: string | null;
  body: { delivery: string; job: { id: string } };
  /** Settles this try: an HTTP status, or a connection error. */
  answer(status: number | Error): void;
  /** Aborted when the callbacks cut it. */
  signal: AbortSignal;
}

let db: DB | undefined;
afterEach(() => {
  db?.close();
  db = undefined;
});

async function setup() {
  const where = layout(await tempDir('cycle-job-callbacks-'));
  db = openDatabase(where.db);
  const database = db;
  const clock = manualClock();
  const events = new EventLog(database, clock);
  const states = new JobStates({ db: database, events, layout: where, clock });
  const sent: Sent[] = [];
  const logged: string[] = [];
  const fakeFetch = (async (_url: string, init: RequestInit) =>
    new Promise<Response>((resolve, reject) => {
      const signal = init.signal!;
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      sent.push({
        delivery: new Headers(init.headers).get('x-cycle-delivery'),
        body: JSON.parse(String(init.body)),
        answer: (status) => (status instanceof Error ? reject(status) : resolve(new Response(null, { status }))),
        signal,
      });
    })) as typeof fetch;
  const row = (id: string): JobRow | undefined => database.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
  const jobs = {
    row,
    request: (job: JobRow) => JSON.parse(job.request),
    document: (job: JobRow) => ({ id: job.id, status: job.status }) as Job,
  };
  /** One server's callbacks: what a start makes. */
  const callbacks = (): JobCallbacks =>
    new JobCallbacks({
      db: database,
      states,
      jobs,
      clock,
      log: (line) => logged.push(line),
      fetch: fakeFetch,
      baseDelayMs: 100,
      attempts: 3,
      stopGraceMs: GRACE_MS,
    });
  let seq = 0;
  const finishedJob = (callbackState: string): string => {
    const id = `job_${++seq}`;
    database
      .prepare(
        "INSERT INTO jobs (id, seq, project, type, status, request, created_at, callback_state) VALUES (?, ?, 'p', 'structured_runner', 'completed', ?, ?, ?)",
      )
      .run(id, seq, JSON.stringify({ callback_url: URL }), new Date(clock.now()).toISOString(), callbackState);
    return id;
  };
  const state = (id: string): string | null => row(id)!.callback_state;
  /** Lets the delivery's continuations run (they await the fake's promises). */
  const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
  return { clock, states, sent, logged, callbacks, finishedJob, state, settle, database };
}

describe('job callbacks, step by step', () => {
  it('a job finished while running: delivering before the POST, delivered on its 2xx, once', async () => {
    const t = await setup();
    const first = t.callbacks();
    const id = t.finishedJob('pending');
    first.send(id);
    first.send(id); // heard twice (a finish and the start-up recovery): still one POST
    first.resume();
    expect(t.sent).toHaveLength(1);
    expect(t.state(id)).toBe('delivering');
    expect(t.sent[0]!.delivery).toBe(callbackDeliveryId(id));
    expect(t.sent[0]!.body.delivery).toBe(callbackDeliveryId(id));
    t.sent[0]!.answer(204);
    await t.settle();
    expect(t.state(id)).toBe('delivered');
    await first.stop();
    const restarted = t.callbacks();
    restarted.resume();
    restarted.send(id);
    expect(t.sent).toHaveLength(1);
  });

  it('a crash after the POST went out, before its answer was recorded: the restart sends it again with the same id', async () => {
    const t = await setup();
    const crashed = t.callbacks();
    const id = t.finishedJob('pending');
    crashed.send(id);
    expect(t.state(id)).toBe('delivering');
    // kill -9: nothing more runs in that process (its POST is never answered there).
    const restarted = t.callbacks();
    restarted.resume();
    expect(t.sent).toHaveLength(2);
    expect(t.sent[1]!.delivery).toBe(t.sent[0]!.delivery);
    t.sent[1]!.answer(200);
    await t.settle();
    expect(t.state(id)).toBe('delivered');
  });

  it('a stop during the backoff: no write after it, the next start sends it once more with the same id', async () => {
    const t = await setup();
    const first = t.callbacks();
    const id = t.finishedJob('pending');
    first.send(id);
    t.sent[0]!.answer(503);
    await t.clock.whenSleeping(1);
    await first.stop();
    expect(t.state(id)).toBe('delivering');
    expect(t.sent).toHaveLength(1);
    const restarted = t.callbacks();
    restarted.resume();
    expect(t.sent).toHaveLength(2);
    expect(t.sent[1]!.delivery).toBe(t.sent[0]!.delivery);
  });

  it('a stop while a POST is out: answered within the grace it is recorded; unanswered it is cut and sent on the next start', async () => {
    const t = await setup();
    const first = t.callbacks();
    const answered = t.finishedJob('pending');
    const unanswered = t.finishedJob('pending');
    first.send(answered);
    first.send(unanswered);
    const stopping = first.stop();
    await t.clock.whenSleeping(1); // the grace
    t.sent[0]!.answer(204);
    await t.settle();
    expect(t.state(answered)).toBe('delivered');
    expect(t.sent[1]!.signal.aborted).toBe(false);
    t.clock.advance(GRACE_MS);
    await stopping;
    expect(t.sent[1]!.signal.aborted).toBe(true);
    expect(t.state(unanswered)).toBe('delivering');
    // A job finished after the stop (its worker stopping) keeps its callback for the next start.
    const late = t.finishedJob('pending');
    first.send(late);
    expect(t.state(late)).toBe('pending');
    const restarted = t.callbacks();
    restarted.resume();
    expect(t.sent.slice(2).map((s) => s.body.job.id)).toEqual([unanswered, late]);
  });

  it('retries 5xx and connection errors with backoff, the same id each time; fails after the last try; a 4xx is not retried', async () => {
    const t = await setup();
    const callbacks = t.callbacks();
    const flaky = t.finishedJob('pending');
    callbacks.send(flaky);
    t.sent[0]!.answer(502);
    await t.clock.whenSleeping(1);
    t.clock.advance(100);
    await t.settle();
    t.sent[1]!.answer(new Error('connect ECONNREFUSED'));
    await t.clock.whenSleeping(1);
    t.clock.advance(200);
    await t.settle();
    t.sent[2]!.answer(503);
    await t.settle();
    expect(t.sent.map((s) => s.delivery)).toEqual(Array(3).fill(callbackDeliveryId(flaky)));
    expect(t.state(flaky)).toBe('failed');
    const refused = t.finishedJob('pending');
    callbacks.send(refused);
    t.sent[3]!.answer(404);
    await t.settle();
    expect(t.state(refused)).toBe('failed');
    expect(t.sent).toHaveLength(4);
    // Settled either way: a restart sends neither again.
    t.callbacks().resume();
    expect(t.sent).toHaveLength(4);
  });

  it('a job removed while its callback was out (retention): the answer is logged, nothing thrown', async () => {
    const t = await setup();
    const callbacks = t.callbacks();
    const id = t.finishedJob('pending');
    callbacks.send(id);
    t.database.prepare('DELETE FROM jobs WHERE id = ?').run(id);
    t.sent[0]!.answer(204);
    await t.settle();
    expect(t.logged.join('\n')).toMatch(new RegExp(`callback for ${id}: .*no row`));
    await callbacks.stop();
  });
});
