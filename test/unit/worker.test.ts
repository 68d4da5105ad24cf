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
  readonly releases: Array<{ leaseId: string; reason: string; unstarted?: boolean }> = [];
  /** Tasks handed to `leaseAhead` (a queue that has them ready now); absent: this queue has no `leaseAhead`. */
  ahead?: Lease[];
  /** What the worker asked of the queue, in order. */
  readonly asked: string[] = [];
  /** Renewals are refused: the lease went stale (it expired on the queue's side). */
  stale = false;
  /** Renewals fail: the queue cannot be reached (a daemon cut off from its server). */
  unreachable = false;
  /** The clock renewals extend the lease on (30 s from now). */
  clock: { now(): number } = { now: () => 0 };
  private readonly revokeListeners = new Set<(leaseId: string, why: RevokeReason) => void>();
  private waiters: Array<() => void> = [];

  async lease(_offer: WorkerOffer, max: number): Promise<Lease[]> {
    this.asked.push(`lease ${max}`);
    this.wake();
    return this.toHand.splice(0, max);
  }
  leaseAhead = async (_offer: WorkerOffer): Promise<Lease | undefined> => {
    this.asked.push('ahead');
    const lease = this.ahead?.shift();
    this.wake();
    return lease;
  };
  async renew(leaseId: string): Promise<{ expiresAt: number; cancel: boolean }> {
    this.renewals.push(leaseId);
    if (this.stale) throw new StaleLease(leaseId, 'it expired');
    if (this.unreachable) throw new Error('cannot reach http://server: connection refused');
    return { expiresAt: this.clock.now() + 30_000, cancel: false };
  }
  async report(_leaseId: string, batch: LeaseReport): Promise<void> {
    this.reports.push(batch);
  }
  /** Outcomes wait for this (a queue slow to store them): the next task must not wait for it. */
  completeGate: Promise<void> = Promise.resolve();
  async complete(leaseId: string, outcome: LeaseOutcome): Promise<void> {
    await this.completeGate;
    this.outcomes.push({ leaseId, outcome });
    this.wake();
    this.settle();
  }
  async release(leaseId: string, reason: string, options: { unstarted?: boolean } = {}): Promise<void> {
    this.releases.push({ leaseId, reason, ...(options.unstarted ? { unstarted: true } : {}) });
    this.wake();
    this.settle();
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
  /** Resolves once `count` tasks have ended here in all (an outcome or a release). */
  settled(count = 1): Promise<void> {
    if (this.outcomes.length + this.releases.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.settleWaiters.push({ count, resolve }));
  }
  private settleWaiters: Array<{ count: number; resolve: () => void }> = [];
  private settle(): void {
    const total = this.outcomes.length + this.releases.length;
    for (const waiter of this.settleWaiters.filter((w) => w.count <= total)) {
      this.settleWaiters.splice(this.settleWaiters.indexOf(waiter), 1);
      waiter.resolve();
    }
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
    const ended = queue.settled();
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
    const ended = queue.settled();
    worker!.giveBack('machine m1 became busy (non-job CPU 40 % > 5 %)');
    await ended;
    expect(docker.runningNames()).toEqual([]);
    expect(queue.releases).toEqual([{ leaseId: lease.id, reason: 'machine m1 became busy (non-job CPU 40 % > 5 %)' }]);
    expect(queue.outcomes).toEqual([]);
  });

  it('a lease revoked by a cancel: the container stops and the task ends cancelled', async () => {
    const { queue, docker, lease } = await setup();
    await docker.whenRunning(1);
    const ended = queue.settled();
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

/** What the worker of `setupAhead` logged. */
const workerLog: string[] = [];

/** A lease of the fake queue: task N of job_1. */
function leaseOf(n: number, clock: { now(): number }): Lease {
  return {
    id: `lease_${n}`,
    taskId: `task_${n}`,
    jobId: 'job_1',
    attempt: 1,
    expiresAt: clock.now() + 30_000,
    renewEveryMs: 10_000,
    project: 'demo',
    revision: 1,
    kind: 'task',
    index: n - 1,
    payload: { n },
    downloads: [],
    gpus: false,
  };
}

/** The worker with one slot, a queue holding task 1 for the slot and `ahead` for leases ahead, a Docker that prepares containers. */
async function setupAhead(
  ahead: number[],
  options: { mayTakeWork?: () => boolean } = {},
): Promise<{ queue: FakeQueue; docker: FakeDocker; clock: ReturnType<typeof manualClock>; imagesAsked: () => number }> {
  workerLog.length = 0;
  const queue = new FakeQueue();
  const docker = new FakeDocker();
  docker.hold = true;
  docker.prepares = true;
  const clock = manualClock();
  queue.clock = clock;
  const project = await loadProject(await cycleswapProject());
  const image = docker.addImage({ tags: ['task-image'], layers: ['task'], labels: {} }).id;
  const scratch = await tempDir('cycle-worker-');
  let imagesAsked = 0;
  const inputs: TaskInputs = {
    project: async () => project,
    image: async () => {
      imagesAsked++;
      return image;
    },
    sourceFiles: async () => [],
    volumeSource: async () => undefined,
    fetchArtifact: async () => undefined,
    workDir: (taskId) => path.join(scratch, 'work', taskId),
    artifactStore: async (_jobId, taskId) => path.join(scratch, 'outputs', taskId),
  };
  queue.toHand.push(leaseOf(1, clock));
  queue.ahead = ahead.map((n) => leaseOf(n, clock));
  worker = new Worker({
    queue,
    inputs,
    docker: async () => docker,
    slots: 1,
    env: {},
    serverKey: 'test',
    offer: async () => ({ workerId: 'test' }),
    clock,
    log: (line) => workerLog.push(line),
    ...(options.mayTakeWork ? { mayTakeWork: options.mayTakeWork } : {}),
  });
  worker.start();
  return { queue, docker, clock, imagesAsked: () => imagesAsked };
}

/** Resolves once Docker holds a prepared container named `name` (bounded: the worker gets there in a few turns). */
async function whenPrepared(docker: FakeDocker, name: string): Promise<void> {
  for (let turn = 0; turn < 1000; turn++) {
    if (docker.preparedNames().some((p) => p.name === name)) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`no prepared container ${name}: ${JSON.stringify(docker.preparedNames())}`);
}

/** Each lease ended once: one outcome or one release, never both, never two. */
function endedOnce(queue: FakeQueue): void {
  const ends = [...queue.outcomes.map((o) => o.leaseId), ...queue.releases.map((r) => r.leaseId)];
  expect(new Set(ends).size, `ends: ${ends.join(', ')}`).toBe(ends.length);
}

describe('the worker prepares the next task while its slots are busy', () => {
  it('leases one task ahead, makes its container (started, waiting on its source) and lets it go as soon as the slot frees, before the first outcome is stored', async () => {
    const { queue, docker, imagesAsked } = await setupAhead([2, 3]);
    await docker.whenRunning(1);
    await whenPrepared(docker, 'cycle-server-task_2');
    // One ahead at most: task 3 stays in the queue while task 2 waits.
    expect(docker.preparedNames()).toEqual([{ name: 'cycle-server-task_2', startAhead: true }]);
    expect(queue.asked.filter((a) => a === 'ahead')).toHaveLength(1);
    expect(docker.runningNames()).toEqual(['cycle-server-task_1']);
    // The queue is slow to store task 1's outcome: task 2 starts anyway, once task 1's container exited.
    let storeOutcome: () => void = () => undefined;
    queue.completeGate = new Promise((resolve) => (storeOutcome = resolve));
    docker.exit('cycle-server-task_1', 0, '', { ok: 1 });
    await whenPrepared(docker, 'cycle-server-task_3');
    await docker.whenRunning(1);
    expect(docker.runningNames()).toEqual(['cycle-server-task_2']);
    expect(queue.outcomes).toEqual([]);
    storeOutcome();
    await queue.settled(1);
    expect(queue.outcomes.map((o) => [o.leaseId, o.outcome.status])).toEqual([['lease_1', 'succeeded']]);
    // The revision's image was asked of the inputs once, not once per task.
    expect(imagesAsked()).toBe(1);
    endedOnce(queue);
  });

  it('renews the lease of the task it prepared while it waits for a slot', async () => {
    const { queue, docker, clock } = await setupAhead([2]);
    await docker.whenRunning(1);
    await whenPrepared(docker, 'cycle-server-task_2');
    await clock.whenSleeping(2);
    clock.advance(10_000);
    await clock.whenSleeping(2);
    expect(queue.renewals.sort()).toEqual(['lease_1', 'lease_2']);
  });

  it('a pause (the machine takes no new task) gives the prepared task back unstarted, its container removed; the running one goes on', async () => {
    let paused = false;
    const { queue, docker } = await setupAhead([2], { mayTakeWork: () => !paused });
    await docker.whenRunning(1);
    await whenPrepared(docker, 'cycle-server-task_2');
    paused = true;
    worker!.releaseAhead('machine m1 takes no new task now: paused until 20:00');
    await queue.settled(1);
    expect(queue.releases).toEqual([
      {
        leaseId: 'lease_2',
        reason: 'machine m1 takes no new task now: paused until 20:00; it was prepared ahead and had not started on this machine',
        unstarted: true,
      },
    ]);
    expect(docker.preparedNames()).toEqual([]);
    expect(docker.called('removeContainer')).toContain('cycle-server-task_2');
    expect(docker.runningNames()).toEqual(['cycle-server-task_1']);
    // Paused: the slot that frees takes nothing, and nothing more is leased ahead.
    const asked = queue.asked.length;
    docker.exit('cycle-server-task_1', 0, '', { ok: 1 });
    await queue.settled(2);
    expect(queue.asked.slice(asked)).toEqual([]);
    expect(docker.containersRun.map((c) => c.name)).toEqual(['cycle-server-task_1']);
    endedOnce(queue);
  });

  it('a kick while the machine may not take work gives the prepared task back too (a drain, a pause heard late)', async () => {
    let mayTake = true;
    const { queue, docker } = await setupAhead([2], { mayTakeWork: () => mayTake });
    await docker.whenRunning(1);
    await whenPrepared(docker, 'cycle-server-task_2');
    mayTake = false;
    worker!.kick();
    await queue.settled(1);
    expect(queue.releases).toMatchObject([{ leaseId: 'lease_2', unstarted: true }]);
    expect(docker.preparedNames()).toEqual([]);
  });

  it('a machine turned busy gives back both: the running task (counted) and the prepared one (unstarted)', async () => {
    const { queue, docker } = await setupAhead([2]);
    await docker.whenRunning(1);
    await whenPrepared(docker, 'cycle-server-task_2');
    worker!.giveBack('machine m1 became busy');
    await queue.settled(2);
    expect(queue.releases.sort((a, b) => a.leaseId.localeCompare(b.leaseId))).toEqual([
      { leaseId: 'lease_1', reason: 'machine m1 became busy' },
      { leaseId: 'lease_2', reason: 'machine m1 became busy; it was prepared ahead and had not started on this machine', unstarted: true },
    ]);
    expect(docker.preparedNames()).toEqual([]);
    expect(docker.runningNames()).toEqual([]);
    expect(queue.outcomes).toEqual([]);
    endedOnce(queue);
  });

  it('a cancel of the prepared task ends it cancelled, once, without its container ever running', async () => {
    const { queue, docker } = await setupAhead([2]);
    await docker.whenRunning(1);
    await whenPrepared(docker, 'cycle-server-task_2');
    queue.revoke('lease_2', 'cancelled');
    await queue.settled(1);
    expect(queue.outcomes).toMatchObject([{ leaseId: 'lease_2', outcome: { status: 'cancelled' } }]);
    expect(docker.preparedNames()).toEqual([]);
    expect(docker.containersRun.map((c) => c.name)).toEqual(['cycle-server-task_1']);
    docker.exit('cycle-server-task_1', 0, '', { ok: 1 });
    await queue.settled(2);
    endedOnce(queue);
  });

  it('a stale lease of the prepared task: its container is removed and nothing is said on it', async () => {
    const { queue, docker } = await setupAhead([2]);
    await docker.whenRunning(1);
    await whenPrepared(docker, 'cycle-server-task_2');
    queue.revoke('lease_2', 'expired');
    for (let turn = 0; turn < 1000 && docker.preparedNames().length; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect(docker.preparedNames()).toEqual([]);
    expect(queue.outcomes).toEqual([]);
    expect(queue.releases).toEqual([]);
  });

  it('stop (shutdown): the running task goes back as before, the prepared one unstarted; no container is left', async () => {
    const { queue, docker } = await setupAhead([2]);
    await docker.whenRunning(1);
    await whenPrepared(docker, 'cycle-server-task_2');
    await worker!.stop();
    expect(queue.releases.sort((a, b) => a.leaseId.localeCompare(b.leaseId))).toEqual([
      { leaseId: 'lease_1', reason: 'the worker stopped while the task ran' },
      { leaseId: 'lease_2', reason: 'the worker stopped; it was prepared ahead and had not started on this machine', unstarted: true },
    ]);
    expect(docker.preparedNames()).toEqual([]);
    expect(docker.runningNames()).toEqual([]);
    endedOnce(queue);
  });

  it('a request ahead that fails (the queue out of reach) is logged in one line; the running task goes on and completes', async () => {
    const { queue, docker } = await setupAhead([]);
    queue.leaseAhead = async () => {
      queue.asked.push('ahead');
      throw new Error('cannot reach http://server: connection refused');
    };
    await docker.whenRunning(1);
    await whenAsked(queue, 'ahead');
    docker.exit('cycle-server-task_1', 0, '', { ok: 1 });
    await queue.settled(1);
    expect(queue.outcomes).toMatchObject([{ leaseId: 'lease_1', outcome: { status: 'succeeded' } }]);
    expect(workerLog.filter((line) => line.includes('ahead'))).toEqual([
      'worker: asking for a task to prepare ahead failed: cannot reach http://server: connection refused',
    ]);
  });

  it('leases nothing ahead when the queue answered the request for free slots short (it has nothing more ready)', async () => {
    const { queue, docker } = await setupAhead([]);
    await docker.whenRunning(1);
    await whenAsked(queue, 'ahead');
    // The slot request was answered in full (1 of 1): one ahead asked, none ready: not asked again at the next kick.
    worker!.kick();
    await new Promise((resolve) => setImmediate(resolve));
    expect(queue.asked.filter((a) => a === 'ahead')).toHaveLength(1);
    docker.exit('cycle-server-task_1', 0, '', { ok: 1 });
    await queue.settled(1);
    // The freed slot asks the queue (none left): answered short, so no lease ahead either.
    await whenAsked(queue, 'lease 1', 2);
    expect(queue.asked.filter((a) => a === 'ahead')).toHaveLength(1);
  });
});

/** Resolves once the worker asked `what` of the queue `times` times (bounded turns). */
async function whenAsked(queue: FakeQueue, what: string, times = 1): Promise<void> {
  for (let turn = 0; turn < 1000; turn++) {
    if (queue.asked.filter((a) => a === what).length >= times) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error(`the worker did not ask "${what}" ${times} time(s): ${queue.asked.join(', ')}`);
}
