import type { Lease, LeaseOutcome, LeaseReport, WorkerOffer } from '../queue/lease.js';
import type { RevokeReason, WorkQueue } from '../queue/work-queue.js';

/**
 * All a worker says to the work queue. Every call on a lease that is no longer current throws
 * StaleLease (src/server/queue/lease.ts): the worker stops that task. In-process today; the same
 * calls go over HTTP for a worker on another machine.
 */
export interface WorkQueueClient {
  /** Up to `max` tasks this worker can run. */
  lease(offer: WorkerOffer, max: number): Promise<Lease[]>;
  /** Keeps a lease alive; `cancel` says its job was cancelled (stop the task). */
  renew(leaseId: string): Promise<{ expiresAt: number; cancel: boolean }>;
  /** Output, progress, a captured artifact. */
  report(leaseId: string, batch: LeaseReport): Promise<void>;
  /** The task's outcome; the lease ends. */
  complete(leaseId: string, outcome: LeaseOutcome): Promise<void>;
  /**
   * Gives the task back without an outcome (the worker stops); it runs again. `unstarted`: its
   * container never ran (a task prepared ahead): not counted as an attempt when nothing was reported on it.
   */
  release(leaseId: string, reason: string, options?: { unstarted?: boolean }): Promise<void>;
  /**
   * One more task to prepare while every slot is busy (Worker's lease ahead), asked without
   * waiting: only a task the queue has ready now, none otherwise. Optional: without it a worker
   * prepares nothing ahead.
   */
  leaseAhead?(offer: WorkerOffer): Promise<Lease | undefined>;
  /** Heard when there may be work (a listener in-process; a long poll over HTTP later). */
  onWork(listener: () => void): () => void;
  /** Whether a failed call may succeed if made again (the network, not the request): an outcome is then sent again. */
  isTransient?(error: unknown): boolean;
  /** Heard when a lease is taken back (a cancel, an expiry) before the next renewal says so. */
  onRevoked(listener: (leaseId: string, why: RevokeReason) => void): () => void;
}

/** The queue in the same process: calls go straight through. */
export class InProcessQueueClient implements WorkQueueClient {
  constructor(private readonly queue: WorkQueue) {}

  lease(offer: WorkerOffer, max: number): Promise<Lease[]> {
    return this.queue.lease(offer, max);
  }

  renew(leaseId: string): Promise<{ expiresAt: number; cancel: boolean }> {
    return this.queue.renew(leaseId);
  }

  report(leaseId: string, batch: LeaseReport): Promise<void> {
    return this.queue.report(leaseId, batch);
  }

  complete(leaseId: string, outcome: LeaseOutcome): Promise<void> {
    return this.queue.complete(leaseId, outcome);
  }

  release(leaseId: string, reason: string, options: { unstarted?: boolean } = {}): Promise<void> {
    return this.queue.release(leaseId, reason, options);
  }

  async leaseAhead(offer: WorkerOffer): Promise<Lease | undefined> {
    return (await this.queue.lease(offer, 1))[0];
  }

  onWork(listener: () => void): () => void {
    return this.queue.onWork(listener);
  }

  onRevoked(listener: (leaseId: string, why: RevokeReason) => void): () => void {
    return this.queue.onRevoked(listener);
  }
}
