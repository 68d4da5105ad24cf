import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadProject } from '../../src/project/load.js';
import { StaleLease, type Lease, type LeaseOutcome, type LeaseReport, type WorkerOffer } from '../../src/server/queue/lease.js';
import type { RevokeReason } from '../../src/server/queue/work-queue.js';
import type { WorkQueueClient } from '../../src/server/worker/queue-client.js';
import type { TaskInputs } from '../../src/server/worker/task-inputs.js';
import { Worker } from '../../src/server/worker/worker.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { cycleswapProject, manualClock, tempDir } from '../helpers/context.js';

/**
 * The worker against a fake queue (what it is told and what it says) on the fake Docker, with
 * containers held until the test ends them, on a manual clock: no sleeps.
 */
class FakeQueue implements WorkQueueClient {
  readonly toHand: Lease[] = [];
  readonly renewals: string[] = [];
  readonly reports: LeaseReport[] = [];
  readonly outcomes: Array<{ leaseId: string; outcome: LeaseOutcome }> = [];
  readonly releases: Array<{ leaseId: string; reason: string }> = [];
  /** Renewals are refused: the lease went stale (it expired on the queue's side). */
  stale = false;
  /** Renewals fail: the queue cannot be reached (a daemon cut off from its server). */
  unreachable = false;
  /** The clock renewals extend the lease on (30 s from now). */
  clock: { now(): number } = { now: () => 0 };
  private readonly revokeListeners = new Set<(leaseId: string, why: RevokeReason) => void>();
  private waiters: Array<() => void> = [];

  async lease(_offer: WorkerOffer, max: number): Promise<Lease[]> {
    this.wake();
    return this.toHand.splice(0, max);
  }
  async renew(leaseId: string): Promise<{ expiresAt: number; cancel: boolean }> {
    this.renewals.push(leaseId);
    if (this.stale) throw new StaleLease(leaseId, 'it expired');
    if (this.unreachable) throw new Error('cannot reach http://server: connection refused');
    return { expiresAt: this.clock.now() + 30_000, cancel: false };
  }
  async report(_leaseId: string, batch: LeaseReport): Promise<void> {
    this.reports.push(batch);
  }
  async complete(leaseId: string, outcome: LeaseOutcome): Promise<void> {
    this.outcomes.push({ leaseId, outcome });
    this.wake();
  }
  async release(leaseId: string, reason: string): Promise<void> {
    this.releases.push({ leaseId, reason });
    this.wake();
  }
  onWork(): () => void {
    return () => undefined;
  }
  onRevoked(listener: (leaseId: string, why: RevokeReason) => void): () => void {
    this.revokeListeners.add(listener);
    return () => this.revokeListeners.delete(listener);
  }
  revoke(leaseId: string, why: RevokeReason): void {
    for (const listener of this.revokeListeners) listener(leaseId, why);
  }
  /** Resolves at the worker's next call that ends a task or asks for work (it asks again once a task ended). */
  next(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}

let worker: Worker | undefined;
afterEach(async () => {
  await worker?.stop();
  worker = undefined;
});

async function setup(
  offer: () => Promise<WorkerOffer> = async () => ({ workerId: 'test' }),
): Promise<{ queue: FakeQueue; docker: FakeDocker; clock: ReturnType<typeof manualClock>; lease: Lease }> {
  const queue = new FakeQueue();
  const docker = new FakeDocker();
  docker.hold = true;
  const clock = manualClock();
  queue.clock = clock;
  const project = await loadProject(await cycleswapProject());
  const image = docker.addImage({ tags: ['task-image'], layers: ['task'], labels: {} }).id;
  const scratch = await tempDir('cycle-worker-');
  const inputs: TaskInputs = {
    project: async () => project,
    image: async () => image,
    sourceFiles: async () => [],
    volumeSource: async () => undefined,
    fetchArtifact: async () => undefined,
    workDir: (taskId) => path.join(scratch, 'work', taskId),
    artifactStore: async (_jobId, taskId) => path.join(scratch, 'outputs', taskId),
  };
  const lease: Lease = {
    id: 'lease_1',
    taskId: 'task_1',
    jobId: 'job_1',
    attempt: 1,
    expiresAt: clock.now() + 30_000,
    renewEveryMs: 10_000,
    project: 'demo',
    revision: 1,
    kind: 'task',
    index: 0,
    payload: { n: 1 },
    downloads: [],
    gpus: false,
  };
  queue.toHand.push(lease);
  worker = new Worker({
    queue,
    inputs,
    docker: async () => docker,
    slots: 1,
    env: {},
    serverKey: 'test',
    offer,
    clock,
    log: () => undefined,
  });
  worker.start();
  return { queue, docker, clock, lease };
}

describe('the worker', () => {
  it('renews its lease while the task runs, reports its output, then completes it with the outcome and its stage times', async () => {
    const { queue, docker, clock, lease } = await setup();
    const t0 = clock.now();
    await docker.whenRunning(1);
    await clock.whenSleeping(1);
    clock.advance(10_000);
    await clock.whenSleeping(1); // renewed, and asleep until the next renewal
    expect(queue.renewals).toEqual([lease.id]);
    const ended = queue.next();
    docker.exit('cycle-server-task_1', 0, 'hello\n', { score: 3 });
    await ended;
    // The container ran 10 s on the task clock: its stages say so (issue 22).
    const stages = { image_ready: t0, created: t0, started: t0, exited: t0 + 10_000, captured: t0 + 10_000 };
    expect(queue.outcomes).toEqual([{ leaseId: lease.id, outcome: { status: 'succeeded', result: { score: 3 }, exitCode: 0, stages } }]);
    expect(queue.reports.map((r) => r.output ?? '').join('')).toBe('hello\n');
    expect(clock.sleeping()).toBe(0);
  });

  it('a refused renewal (the lease went stale) stops the container, and nothing more is said on that lease', async () => {
    const { queue, docker, clock } = await setup();
    await docker.whenRunning(1);
    await clock.whenSleeping(1);
    queue.stale = true;
    const askedAgain = queue.next();
    clock.advance(10_000);
    await askedAgain; // the task ended and the worker asks for work again
    expect(docker.called('removeContainer')).toContain('cycle-server-task_1');
    expect(queue.outcomes).toEqual([]);
    expect(queue.releases).toEqual([]);
  });

  it('renewals that fail (the queue unreachable) past the lease life stop the container; nothing more is said on that lease', async () => {
    const { queue, docker, clock } = await setup();
    await docker.whenRunning(1);
    await clock.whenSleeping(1);
    queue.unreachable = true;
    let ended = false;
    const askedAgain = queue.next().then(() => (ended = true));
    // Renewals fail from 10 s on; the lease (30 s) runs out without one. Bounded: 12 steps of 5 s.
    for (let step = 0; step < 12 && !ended; step++) {
      await Promise.race([clock.whenSleeping(1), askedAgain]);
      clock.advance(5_000);
    }
    await askedAgain;
    expect(queue.renewals.length).toBeGreaterThan(1); // tried again after the first failure
    expect(docker.called('removeContainer')).toContain('cycle-server-task_1');
    expect(docker.runningNames()).toEqual([]);
    expect(queue.outcomes).toEqual([]);
    expect(queue.releases).toEqual([]);
  }, 20_000);

  it('giveBack (a machine turned busy): the container stops and the task goes back to the queue with the reason', async () => {
    const { queue, docker, lease } = await setup();
    await docker.whenRunning(1);
    const ended = queue.next();
    worker!.giveBack('machine m1 became busy (non-job CPU 40 % > 5 %)');
    await ended;
    expect(docker.runningNames()).toEqual([]);
    expect(queue.releases).toEqual([{ leaseId: lease.id, reason: 'machine m1 became busy (non-job CPU 40 % > 5 %)' }]);
    expect(queue.outcomes).toEqual([]);
  });

  it('a lease revoked by a cancel: the container stops and the task ends cancelled', async () => {
    const { queue, docker, lease } = await setup();
    await docker.whenRunning(1);
    const ended = queue.next();
    queue.revoke(lease.id, 'cancelled');
    await ended;
    expect(docker.runningNames()).toEqual([]);
    expect(queue.outcomes).toEqual([{ leaseId: lease.id, outcome: { status: 'cancelled', error: 'cancelled', stages: expect.any(Object) } }]);
  });

  it('stop: a running task is given back to the queue, not finished', async () => {
    const { queue, docker, lease } = await setup();
    await docker.whenRunning(1);
    await worker!.stop();
    expect(docker.runningNames()).toEqual([]);
    expect(queue.releases).toEqual([{ leaseId: lease.id, reason: 'the worker stopped while the task ran' }]);
    expect(queue.outcomes).toEqual([]);
  });

  it('an offer that could not be made (the probe failed) is asked again at the next kick, and work is leased then', async () => {
    let probes = 0;
    const { docker } = await setup(async () => {
      probes++;
      if (probes === 1) throw new Error('nvidia-smi hung');
      return { workerId: 'test' };
    });
    worker!.kick();
    await docker.whenRunning(1);
    expect(probes).toBe(2);
  });
});
