import type { Job } from '../api/schemas.js';
import type { Clock } from '../context.js';
import { settledWithin } from '../util/wait.js';
import type { DB } from './db.js';
import type { JobService } from './jobs.js';
import type { JobStates } from './state.js';

/**
 * A finished job's callback: `POST callback_url {"event": "job.finished", "delivery", "job"}`,
 * once per job as far as a crash allows (docs/design.md, "Job callbacks").
 *
 * The job's `callback_state` walks pending → delivering → delivered | failed. `delivering` is
 * written (and committed) before the first POST, `delivered` the moment a 2xx status arrives, so
 * a restart sends again only a callback whose answer it never recorded. That one is sent with the
 * same delivery id (the `X-Cycle-Delivery` and `Idempotency-Key` headers and the body's
 * `delivery`): a server killed after the receiver took the POST but before it wrote `delivered`
 * cannot know the receiver has it, so delivery is at-least-once and the receiver dedupes on the id.
 */
export interface JobCallbackOptions {
  db: DB;
  states: JobStates;
  /** A job's row, its request (the URL) and its document (what is sent). */
  jobs: Pick<JobService, 'row' | 'request' | 'document'>;
  /** Backoff between tries runs on it (tests advance a manual one). */
  clock: Clock;
  log: (line: string) => void;
  /** Tries per callback (5 unless set): a connection error, a 5xx or a 429 is tried again. */
  attempts?: number;
  /** The first backoff (500 ms unless set), doubled after each try. */
  baseDelayMs?: number;
  /** The HTTP client (`fetch` unless set: tests pass a fake receiver). */
  fetch?: typeof fetch;
  /**
   * On stop, how long a POST already sent may take to be answered (3 s unless set): an answer
   * that comes is recorded, so the next start does not send that callback again.
   */
  stopGraceMs?: number;
}

/** Each try's own limit. */
const REQUEST_TIMEOUT_MS = 10_000;

/** The id a receiver dedupes a job's callback on: the same on every try and after a restart (a finished job never finishes again). */
export function callbackDeliveryId(jobId: string): string {
  return `${jobId}.finished`;
}

type Outcome = 'delivered' | 'failed' | 'stopped';

export class JobCallbacks {
  /** The jobs whose callback this process is sending: one delivery each at a time. */
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Aborted on stop: backoff waits end, and no new delivery starts. */
  private readonly stopping = new AbortController();
  /** Aborted when the stop's grace is over: the POSTs still unanswered are cut. */
  private readonly cut = new AbortController();

  constructor(private readonly options: JobCallbackOptions) {
    options.states.onJobFinished((job) => this.send(job.id));
  }

  /**
   * On start: sends every finished job's callback not yet settled, those a stop or a crash cut
   * short included (`delivering`: again, with the same delivery id).
   */
  resume(): void {
    const unsettled = this.options.db
      .prepare(
        "SELECT id, callback_state FROM jobs WHERE callback_state IN ('pending', 'delivering') AND status IN ('completed', 'partial', 'failed', 'cancelled') ORDER BY seq",
      )
      .all() as Array<{ id: string; callback_state: string }>;
    for (const { id, callback_state } of unsettled) {
      if (callback_state === 'delivering' && !this.inFlight.has(id))
        this.options.log(
          `job ${id}: its callback was being sent when the server stopped: sending it again (delivery ${callbackDeliveryId(id)}, which the receiver may have seen)`,
        );
      this.send(id);
    }
  }

  /** A finished job's callback, unless it is settled or this process sends it already. */
  send(jobId: string): void {
    const { jobs, states } = this.options;
    if (this.stopping.signal.aborted || this.inFlight.has(jobId)) return;
    const job = jobs.row(jobId);
    const url = job ? jobs.request(job).callback_url : undefined;
    if (!job || !url) return;
    // Written before the POST: a restart finds it and knows this callback may have gone out.
    if (!states.claimCallback(jobId)) return;
    const delivery = this.deliver(url, jobs.document(job))
      .then((outcome) => {
        // Stopped: still `delivering`, the next start sends it (same delivery id).
        if (outcome !== 'stopped') states.recordCallback(jobId, outcome);
      })
      // Logged, never thrown: a job retention removed meanwhile must not stop the server.
      .catch((error: Error) => this.options.log(`callback for ${jobId}: ${error.message}`))
      .finally(() => this.inFlight.delete(jobId));
    this.inFlight.set(jobId, delivery);
  }

  /**
   * Starts no more deliveries and ends backoff waits; a POST already sent has `stopGraceMs` to
   * be answered (and recorded), then it is cut. Resolves when no delivery runs, before the
   * database closes.
   */
  async stop(): Promise<void> {
    this.stopping.abort();
    const running = Promise.all(this.inFlight.values());
    await settledWithin(running, this.options.stopGraceMs ?? 3_000, this.options.clock);
    this.cut.abort();
    await running;
  }

  /** POSTs the job until an answer settles it; 'stopped' when the server stops first. */
  private async deliver(url: string, job: Job): Promise<Outcome> {
    const { log } = this.options;
    const attempts = this.options.attempts ?? 5;
    const base = this.options.baseDelayMs ?? 500;
    const send = this.options.fetch ?? fetch;
    const delivery = callbackDeliveryId(job.id);
    for (let attempt = 1; attempt <= attempts; attempt++) {
      if (this.stopping.signal.aborted) return 'stopped';
      try {
        const response = await send(url, {
          method: 'POST',
          headers: {
            'Content-Type': 'application/json',
            'User-Agent': 'cycle-server',
            'X-Cycle-Event': 'job.finished',
            'X-Cycle-Delivery': delivery,
            'Idempotency-Key': delivery,
          },
          body: JSON.stringify({ event: 'job.finished', delivery, job }),
          signal: AbortSignal.any([this.cut.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]),
        });
        // The status settles it: the body is read after (and only to free the connection), so
        // the window between the receiver's answer and `delivered` is as short as it can be.
        void response.arrayBuffer().catch(() => undefined);
        if (response.ok) return 'delivered';
        if (response.status < 500 && response.status !== 429) {
          log(`callback ${url} for ${job.id}: HTTP ${response.status}, not retried`);
          return 'failed';
        }
        log(`callback ${url} for ${job.id}: HTTP ${response.status} (attempt ${attempt}/${attempts})`);
      } catch (error) {
        if (this.cut.signal.aborted) return 'stopped';
        log(`callback ${url} for ${job.id}: ${(error as Error).message} (attempt ${attempt}/${attempts})`);
      }
      if (attempt < attempts) {
        const waited = await this.options.clock.sleep(base * 2 ** (attempt - 1), this.stopping.signal).then(
          () => true,
          () => false,
        );
        if (!waited) return 'stopped';
      }
    }
    return 'failed';
  }
}
