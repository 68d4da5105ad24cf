import { createReadStream } from 'node:fs';
import { leaseAnswerSchema, MAX_LEASE_WAIT_MS, renewAnswerSchema, type WireLease } from '../../api/machine-protocol.js';
import { ApiError, type RequestOptions, type Transport } from '../../api/transport.js';
import type { Clock } from '../../context.js';
import { StaleLease, type Lease, type LeaseOutcome, type LeaseReport, type WorkerOffer } from '../queue/lease.js';
import type { RevokeReason } from '../queue/work-queue.js';
import type { WorkQueueClient } from './queue-client.js';

export interface HttpQueueClientOptions {
  /** The machine's transport: its token, the server's URL, timeouts and caps (src/api/transport.ts). */
  transport: Transport;
  /** The worker's clock: a lease's expiry is kept on it (the server sends durations). */
  clock: Clock;
  log: (line: string) => void;
  /** How long one poll for work waits on the server (at most MAX_LEASE_WAIT_MS). */
  pollWaitMs?: number;
  /** The longest pause between polls after failures. */
  maxBackoffMs?: number;
}

/**
 * The work queue of a `cycle server` on another machine, over the machine routes
 * (`/api/v1/machine/...`, docs/api.md). One long poll at a time asks for as many leases as the
 * worker has idle slots: it answers at once when there is work, else as soon as there is some,
 * so a new task reaches an idle machine promptly without polling every few seconds. The leases
 * it brings are kept until the worker asks (`lease`), which the poll's `onWork` makes it do.
 * A refused call on a lease (409 `stale_lease`) is a StaleLease, as in-process.
 */
export class HttpQueueClient implements WorkQueueClient {
  private readonly workListeners = new Set<() => void>();
  private readonly revokeListeners = new Set<(leaseId: string, why: RevokeReason) => void>();
  /** Leases a poll brought that the worker has not taken yet. */
  private readonly stash: Lease[] = [];
  /** Idle slots the worker last said it had, less what the polls brought since. */
  private demand = 0;
  private polling = false;
  private closed = false;
  private readonly lifetime = new AbortController();
  private wakePoller: (() => void) | undefined;

  constructor(private readonly options: HttpQueueClientOptions) {}

  /** Takes what the polls brought; the rest of `max` becomes the next poll's ask. The offer is the machine's last heartbeat, on the server. */
  async lease(_offer: WorkerOffer, max: number): Promise<Lease[]> {
    const taken = this.stash.splice(0, Math.max(0, max));
    this.demand = Math.max(0, max - taken.length);
    this.wake();
    return taken;
  }

  async renew(leaseId: string): Promise<{ expiresAt: number; cancel: boolean }> {
    const answer = await this.call(leaseId, 'POST', `/api/v1/machine/leases/${encodeURIComponent(leaseId)}/renew`, {}, renewAnswerSchema);
    return { expiresAt: this.elapsed() + answer.expires_in_ms, cancel: answer.cancel };
  }

  /**
   * Output and progress as one JSON report; a captured artifact as its bytes first (the server
   * stores them in the task's folder, then records the capture), since the file is on this machine.
   */
  async report(leaseId: string, batch: LeaseReport): Promise<void> {
    const base = `/api/v1/machine/leases/${encodeURIComponent(leaseId)}`;
    if (batch.artifact) {
      const file = batch.artifact.captured;
      await this.call(leaseId, 'PUT', `${base}/captured`, undefined, undefined, {
        query: {
          path: file.path,
          first_seen: file.firstSeen,
          last_captured: file.lastCaptured,
          mtime_ns: file.mtimeNs.toString(),
          upload_key: file.uploadKey,
        },
        upload: { open: () => createReadStream(file.absolute), length: file.size, contentType: 'application/octet-stream' },
      });
    }
    if (batch.output === undefined && batch.progress === undefined) return;
    await this.call(leaseId, 'POST', `${base}/report`, {
      ...(batch.output !== undefined ? { output: batch.output } : {}),
      ...(batch.progress !== undefined ? { progress: batch.progress } : {}),
      ...(batch.progressPoints !== undefined ? { progress_points: batch.progressPoints } : {}),
    });
  }

  async complete(leaseId: string, outcome: LeaseOutcome): Promise<void> {
    await this.call(leaseId, 'POST', `/api/v1/machine/leases/${encodeURIComponent(leaseId)}/complete`, {
      status: outcome.status,
      ...(outcome.result !== undefined ? { result: outcome.result } : {}),
      ...(outcome.error !== undefined ? { error: outcome.error } : {}),
      ...(outcome.exitCode !== undefined ? { exit_code: outcome.exitCode } : {}),
      ...(outcome.stages !== undefined ? { stages: outcome.stages } : {}),
    });
  }

  async release(leaseId: string, reason: string, options: { unstarted?: boolean } = {}): Promise<void> {
    await this.call(leaseId, 'POST', `/api/v1/machine/leases/${encodeURIComponent(leaseId)}/release`, {
      reason: reason.slice(0, 1024),
      ...(options.unstarted ? { unstarted: true } : {}),
    });
  }

  /**
   * One lease to prepare ahead, asked apart from the long poll and without waiting (`wait_ms`
   * 0): the server answers at once with a task ready now, which no idle machine's waiting poll
   * took, or with none. The server lets a machine hold one lease beyond its slots for it.
   */
  async leaseAhead(_offer: WorkerOffer): Promise<Lease | undefined> {
    if (this.closed) return undefined;
    const { body } = await this.options.transport.request('POST', '/api/v1/machine/lease', {
      json: { max: 1, wait_ms: 0 },
      schema: leaseAnswerSchema,
      signal: this.lifetime.signal,
    });
    const now = this.elapsed();
    const [first, ...more] = body.leases.map((wire) => localLease(wire, now));
    // Asked for one: any more would be the server's mistake; given back rather than left to expire.
    for (const extra of more) await this.releaseUnstarted(extra.id, 'the machine asked for one task ahead').catch(() => undefined);
    return first;
  }

  /** Gives back a lease a poll brought that no task took: not counted as an attempt. */
  private async releaseUnstarted(leaseId: string, reason: string): Promise<void> {
    await this.call(leaseId, 'POST', `/api/v1/machine/leases/${encodeURIComponent(leaseId)}/release`, { reason: reason.slice(0, 1024), unstarted: true });
  }

  /** Polls while someone listens: each answer with leases tells the listeners there is work. */
  onWork(listener: () => void): () => void {
    this.workListeners.add(listener);
    void this.poll();
    return () => this.workListeners.delete(listener);
  }

  /** Over HTTP a revoke is heard at the next renewal (`cancel`, or a stale lease); nothing calls these listeners. */
  onRevoked(listener: (leaseId: string, why: RevokeReason) => void): () => void {
    this.revokeListeners.add(listener);
    return () => this.revokeListeners.delete(listener);
  }

  /**
   * The machine takes no new task for now (paused, busy): asks for nothing more, and gives back
   * the leases a poll brought that no task took yet (they would expire waiting).
   */
  async holdOff(reason: string): Promise<void> {
    this.demand = 0;
    for (const lease of this.stash.splice(0)) await this.releaseUnstarted(lease.id, reason).catch(() => undefined);
  }

  /** Ends the poll; leases it brought that no task took are given back. */
  async close(): Promise<void> {
    this.closed = true;
    this.lifetime.abort();
    this.wake();
    for (const lease of this.stash.splice(0)) await this.releaseUnstarted(lease.id, 'the daemon stopped before the task started').catch(() => undefined);
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    let failures = 0;
    try {
      while (!this.closed && this.workListeners.size > 0) {
        if (this.demand <= 0 || this.stash.length > 0) {
          await new Promise<void>((resolve) => (this.wakePoller = resolve));
          continue;
        }
        try {
          const { body } = await this.options.transport.request('POST', '/api/v1/machine/lease', {
            json: { max: this.demand, wait_ms: Math.min(this.options.pollWaitMs ?? MAX_LEASE_WAIT_MS, MAX_LEASE_WAIT_MS) },
            schema: leaseAnswerSchema,
            signal: this.lifetime.signal,
          });
          failures = 0;
          if (body.leases.length === 0) continue;
          const now = this.elapsed();
          this.stash.push(...body.leases.map((wire) => localLease(wire, now)));
          this.demand = Math.max(0, this.demand - body.leases.length);
          for (const listener of [...this.workListeners]) listener();
        } catch (error) {
          if (this.closed) return;
          failures++;
          const delay = Math.min(this.options.maxBackoffMs ?? 10_000, 250 * 2 ** Math.min(failures, 10));
          this.options.log(`asking for work failed (${(error as Error).message}); again in ${Math.round(delay / 100) / 10}s`);
          await this.options.clock.sleep(delay, this.lifetime.signal).catch(() => undefined);
        }
      }
    } finally {
      this.polling = false;
    }
  }

  private wake(): void {
    const wake = this.wakePoller;
    this.wakePoller = undefined;
    wake?.();
  }

  private elapsed(): number {
    const { clock } = this.options;
    return clock.elapsed ? clock.elapsed() : clock.now();
  }

  /** A call on a lease: 409 `stale_lease` becomes StaleLease (the worker stops that task). */
  /** The server out of reach, or answering 5xx: worth asking again. A 4xx is its final word. */
  isTransient(error: unknown): boolean {
    if (error instanceof StaleLease) return false;
    return !(error instanceof ApiError) || error.status >= 500;
  }

  private async call<T>(
    leaseId: string,
    method: string,
    route: string,
    json: unknown,
    schema?: import('zod').ZodType<T>,
    extra: Pick<RequestOptions<T>, 'query' | 'upload'> = {},
  ): Promise<T> {
    try {
      const { body } = await this.options.transport.request<T>(method, route, {
        ...(json !== undefined ? { json } : {}),
        ...(schema ? { schema } : {}),
        ...extra,
      });
      return body;
    } catch (error) {
      if (error instanceof ApiError && error.status === 409 && error.code === 'stale_lease') throw new StaleLease(leaseId, error.message);
      throw error;
    }
  }
}

/** A lease as the worker keeps it: its expiry on this machine's clock. */
function localLease(wire: WireLease, now: number): Lease {
  const { expires_in_ms, ...rest } = wire;
  return { ...(rest as Omit<Lease, 'expiresAt'>), expiresAt: now + expires_in_ms };
}
