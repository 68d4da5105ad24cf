import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openDatabase, type DB } from '../../src/server/db.js';
import { EventLog, type StoredEvent } from '../../src/server/events.js';
import { JobService } from '../../src/server/jobs.js';
import { layout as dataLayout, type Layout } from '../../src/server/layout.js';
import { ProjectService } from '../../src/server/projects.js';
import { LEASES_AHEAD, StaleLease, type WorkerOffer } from '../../src/server/queue/lease.js';
import { CANCEL_SLICE, WorkQueue, type MachinePool, type RevokeReason } from '../../src/server/queue/work-queue.js';
import type { MachineInventory } from '../../src/api/machines.js';
import { cpuInventory, gpuInventory, NEWER_DRIVER, OLDER_DRIVER } from '../helpers/machines.js';
import { JobStates } from '../../src/server/state.js';
import { jobLog } from '../../src/server/jobs/job-log.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { rawTarGz, VALID_PROJECT } from '../helpers/tarballs.js';
import { manualClock, tempDir } from '../helpers/context.js';

/**
 * The work queue's rules, with a fake worker: the test itself leases, renews, reports and
 * completes, on a manual clock. No container runs and nothing sleeps.
 */
const LEASE_MS = 30_000;
const OFFER: WorkerOffer = { workerId: 'fake', gpu: { ok: false, reason: 'no driver' } };

interface Setup {
  db: DB;
  layout: Layout;
  queue: WorkQueue;
  jobs: JobService;
  clock: ReturnType<typeof manualClock>;
  events: StoredEvent[];
  revoked: Array<{ leaseId: string; why: RevokeReason }>;
  /** Times the queue woke waiting workers. */
  wakes: () => number;
  submit(body?: Record<string, unknown>, project?: string): Promise<string>;
  task(taskId: string): { status: string; attempt: number; error: string | null; output_tail: string; result: string | null; latest_progress: string | null };
  job(jobId: string): { status: string; error: string | null };
  log(taskId: string): Promise<string>;
}

const opened: DB[] = [];
afterEach(() => {
  for (const db of opened.splice(0)) db.close();
});

async function setup(dataDir?: string, clock: Setup['clock'] = manualClock(), machines?: MachinePool): Promise<Setup> {
  const dir = dataDir ?? (await tempDir('cycle-queue-'));
  const layout = dataLayout(dir);
  await fs.mkdir(layout.dataDir, { recursive: true });
  const db = openDatabase(layout.db);
  opened.push(db);
  const eventLog = new EventLog(db);
  const events: StoredEvent[] = [];
  eventLog.subscribe((event) => events.push(event));
  const states = new JobStates({ db, events: eventLog, layout });
  const docker = new FakeDocker();
  const projects = new ProjectService({
    db,
    events: eventLog,
    layout,
    docker: async () => docker,
    limits: { maxUploadBytes: 1 << 30, maxBytes: 1 << 30, maxFiles: 10_000, projectQuotaBytes: 1 << 30, serverQuotaBytes: 1 << 30 },
    checkInit: () => undefined,
    log: () => undefined,
  });
  let wakes = 0;
  let queue: WorkQueue | undefined;
  const jobs = new JobService({ db, states, projects, layout, hasGpu: async () => true, onSubmitted: () => queue?.kick() });
  queue = new WorkQueue({
    db,
    events: eventLog,
    states,
    jobs,
    projects,
    layout,
    clock,
    log: () => undefined,
    leaseMs: LEASE_MS,
    ...(machines ? { machines } : {}),
  });
  queue.onWork(() => wakes++);
  const revoked: Setup['revoked'] = [];
  queue.onRevoked((leaseId, why) => revoked.push({ leaseId, why }));
  if (!projects.active('p')) {
    await projects.push('p', Readable.from(rawTarGz(VALID_PROJECT)), { rebuild: false, clean: false });
    const withCuda = VALID_PROJECT.map((entry) =>
      entry.name === '.cycleswap/manifest.toml'
        ? { ...entry, body: String(entry.body).replace('name = "p"', 'name = "g"').replace('[job]\n', '[job]\ncuda = "12.4"\n') }
        : entry,
    );
    await projects.push('g', Readable.from(rawTarGz(withCuda)), { rebuild: false, clean: false });
    const withNewerCuda = withCuda.map((entry) =>
      entry.name === '.cycleswap/manifest.toml'
        ? { ...entry, body: String(entry.body).replace('name = "g"', 'name = "h"').replace('cuda = "12.4"', 'cuda = "13.0"') }
        : entry,
    );
    await projects.push('h', Readable.from(rawTarGz(withNewerCuda)), { rebuild: false, clean: false });
  }
  return {
    db,
    layout,
    queue,
    jobs,
    clock,
    events,
    revoked,
    wakes: () => wakes,
    submit: async (body = {}, project = 'p') => (await jobs.insert([await jobs.prepare({ project, ...body })]))[0]!.id,
    task: (taskId) => db.prepare('SELECT * FROM tasks WHERE id = ?').get(taskId) as ReturnType<Setup['task']>,
    job: (jobId) => db.prepare('SELECT * FROM jobs WHERE id = ?').get(jobId) as ReturnType<Setup['job']>,
    // Lines appended while a log file opens are written once it is open (task-logs.ts): read after them.
    log: async (taskId) => {
      await states.logs.flushed(taskId);
      return readFileSync(layout.taskLog(taskId), 'utf8');
    },
  };
}

/** Lets the queue's expiry sweep (woken by `clock.advance`) run its continuation. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('the work queue', () => {
  it('the open jobs the queue picks from are their rows as stored, every column, their texts read once per job', async () => {
    const s = await setup();
    const first = await s.submit({ payload: { n: [1, 2, 3] }, fan_out: { by: 'n' } });
    const second = await s.submit({ payload: { big: 'x'.repeat(10_000) } });
    const stored = () => s.db.prepare("SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY seq").all();
    expect(s.jobs.openJobs()).toEqual(stored());
    // The texts are not read again: a row's other columns are (a status moved by a lease).
    const reads = vi.spyOn(s.db, 'prepare');
    await s.queue.lease(OFFER, 1);
    const picked = s.jobs.openJobs();
    expect(reads.mock.calls.filter(([sql]) => /SELECT request, task_base/.test(sql) || /SELECT \* FROM jobs WHERE status/.test(sql))).toEqual([]);
    reads.mockRestore();
    expect(picked).toEqual(stored());
    expect(picked[0]).toMatchObject({ id: first, status: 'running' });
    await s.queue.cancel(second);
    expect(s.jobs.openJobs().map((job) => job.id)).toEqual([first]);
    expect(s.jobs.openJobs()).toEqual(stored());
  });

  it('hands out leases in job order, at most as many as asked, each with what the worker needs', async () => {
    const s = await setup();
    const first = await s.submit({ payload: { n: [1, 2, 3] }, fan_out: { by: 'n' }, timeout_s: 7 });
    const second = await s.submit({});
    const leases = await s.queue.lease(OFFER, 2);
    expect(leases.map((l) => [l.jobId, l.index])).toEqual([
      [first, 0],
      [first, 1],
    ]);
    expect(leases[0]).toMatchObject({ attempt: 1, expiresAt: s.clock.now() + LEASE_MS, project: 'p', revision: 1, kind: 'task', timeoutS: 7, gpus: false });
    expect(leases[0]!.payload).toMatchObject({ n: 1 });
    expect(leases[0]!.renewEveryMs).toBeLessThan(LEASE_MS / 2);
    expect(s.task(leases[0]!.taskId).status).toBe('running');
    const rest = await s.queue.lease(OFFER, 5);
    expect(rest.map((l) => [l.jobId, l.index])).toEqual([
      [first, 2],
      [second, 0],
    ]);
    expect(await s.queue.lease(OFFER, 5)).toEqual([]);
  });

  it('batches: items grouped by batch_size are one lease each', async () => {
    const s = await setup();
    await s.submit({ payload: { n: [1, 2, 3, 4, 5] }, fan_out: { by: 'n' }, batch_size: 2 });
    const leases = await s.queue.lease(OFFER, 10);
    expect(leases).toHaveLength(3);
  });

  it('a job waits for its dependency; a failed dependency fails it, and it is never leased', async () => {
    const s = await setup();
    const first = await s.submit({});
    const second = await s.submit({ depends_on: [first] });
    const third = await s.submit({ depends_on: [second] });
    const [lease] = await s.queue.lease(OFFER, 5);
    expect(lease!.jobId).toBe(first);
    expect(await s.queue.lease(OFFER, 5)).toEqual([]);
    await s.queue.complete(lease!.id, { status: 'failed', error: 'exited with code 3', exitCode: 3 });
    expect(s.job(first).status).toBe('failed');
    expect(await s.queue.lease(OFFER, 5)).toEqual([]);
    expect(s.job(second)).toMatchObject({ status: 'failed', error: `dependency ${first} ended failed` });
    expect(s.job(third)).toMatchObject({ status: 'failed', error: `dependency ${second} ended failed` });
  });

  it('a dependency that completed lets the dependent job run', async () => {
    const s = await setup();
    const first = await s.submit({});
    const second = await s.submit({ depends_on: [first] });
    const [lease] = await s.queue.lease(OFFER, 5);
    const wakes = s.wakes();
    await s.queue.complete(lease!.id, { status: 'succeeded', result: { ok: 1 }, exitCode: 0 });
    expect(s.wakes()).toBeGreaterThan(wakes);
    expect(s.job(first).status).toBe('completed');
    expect((await s.queue.lease(OFFER, 5)).map((l) => l.jobId)).toEqual([second]);
  });

  it('map before reduce: the reduce is leased once every map ended, with their results', async () => {
    const s = await setup();
    await s.submit({ type: 'map_reduce', payload: { n: [1, 2] }, fan_out: { by: 'n' }, reduce_command: ['reduce'] });
    const maps = await s.queue.lease(OFFER, 5);
    expect(maps.map((l) => l.kind)).toEqual(['map', 'map']);
    await s.queue.complete(maps[0]!.id, { status: 'succeeded', result: { v: 1 }, exitCode: 0 });
    expect(await s.queue.lease(OFFER, 5)).toEqual([]);
    await s.queue.complete(maps[1]!.id, { status: 'succeeded', result: { v: 2 }, exitCode: 0 });
    const [reduce] = await s.queue.lease(OFFER, 5);
    expect(reduce).toMatchObject({ kind: 'reduce', runnerCommand: ['reduce'] });
    expect(reduce!.payload.map_results).toMatchObject([
      { index: 0, result: { v: 1 } },
      { index: 1, result: { v: 2 } },
    ]);
  });

  it('reports: output into the log, tail and events; progress; the outcome ends the lease', async () => {
    const s = await setup();
    const id = await s.submit({});
    const [lease] = await s.queue.lease(OFFER, 1);
    await s.queue.report(lease!.id, { output: 'hello\n', progress: { step: 1 } });
    await s.queue.report(lease!.id, { output: 'world\n' });
    expect(s.task(lease!.taskId)).toMatchObject({ output_tail: 'hello\nworld\n', latest_progress: JSON.stringify({ step: 1 }) });
    await s.queue.complete(lease!.id, { status: 'succeeded', result: { score: 1 }, exitCode: 0 });
    expect(await s.log(lease!.taskId)).toBe('[cycle] task 0 started (attempt 1)\nhello\nworld\n[cycle] task 0 succeeded\n');
    expect(s.events.filter((e) => e.job_id === id).map((e) => `${e.type}:${(e.data as { status?: string }).status ?? ''}`)).toEqual([
      'job:planning',
      'job:queued',
      'job:running',
      'task:running',
      'output:',
      'progress:',
      'output:',
      'task:succeeded',
      'job:completed',
    ]);
  });

  it('renewals extend a lease; one not renewed expires: the task goes back, the attempt counted and the reason logged', async () => {
    const s = await setup();
    await s.submit({});
    const [lease] = await s.queue.lease(OFFER, 1);
    s.clock.advance(LEASE_MS - 1);
    const { expiresAt } = await s.queue.renew(lease!.id);
    expect(expiresAt).toBe(s.clock.now() + LEASE_MS);
    s.clock.advance(LEASE_MS - 1);
    await settle();
    expect(s.task(lease!.taskId).status).toBe('running');
    s.clock.advance(1);
    await settle();
    expect(s.task(lease!.taskId)).toMatchObject({ status: 'queued', attempt: 1 });
    expect(s.revoked).toEqual([{ leaseId: lease!.id, why: 'expired' }]);
    expect(await s.log(lease!.taskId)).toContain(
      '[cycle] task 0 queued again to run on another attempt (worker fake stopped renewing its lease (30s): attempt 1 was interrupted)',
    );
    const [again] = await s.queue.lease(OFFER, 1);
    expect(again).toMatchObject({ taskId: lease!.taskId, attempt: 2 });
    expect(await s.log(lease!.taskId)).toContain('--- attempt 2 ---');
  });

  it('a lease runs on the clock that never jumps: a wall-clock jump (a suspended laptop, a clock change) expires nothing', async () => {
    const wall = manualClock();
    let held = 0;
    // The wall clock jumps an hour; the elapsed clock (performance.now on a real server) moves 1 s.
    const s = await setup(undefined, Object.assign(wall, { elapsed: () => held }));
    await s.submit({});
    const [lease] = await s.queue.lease(OFFER, 1);
    wall.advance(3_600_000);
    held += 1000;
    await settle();
    await s.queue.renew(lease!.id);
    expect(s.task(lease!.taskId)).toMatchObject({ status: 'running', attempt: 1 });
    expect(s.revoked).toEqual([]);
    held += LEASE_MS;
    // Past its life on the elapsed clock it does expire: the next request sweeps it and leases the task again.
    const [again] = await s.queue.lease(OFFER, 1);
    expect(s.revoked).toEqual([{ leaseId: lease!.id, why: 'expired' }]);
    expect(again).toMatchObject({ taskId: lease!.taskId, attempt: 2 });
  });

  it('a report or outcome on an expired lease is refused: the task keeps the one outcome of its current lease', async () => {
    const s = await setup();
    const id = await s.submit({});
    const [lease] = await s.queue.lease(OFFER, 1);
    s.clock.advance(LEASE_MS);
    // No sweep ran yet: the late report itself finds the lease expired.
    await expect(s.queue.report(lease!.id, { output: 'late\n' })).rejects.toBeInstanceOf(StaleLease);
    await expect(s.queue.renew(lease!.id)).rejects.toBeInstanceOf(StaleLease);
    const [again] = await s.queue.lease(OFFER, 1);
    await expect(s.queue.complete(lease!.id, { status: 'succeeded', result: { from: 'stale' } })).rejects.toBeInstanceOf(StaleLease);
    expect(s.task(again!.taskId).status).toBe('running');
    await s.queue.complete(again!.id, { status: 'failed', error: 'exited with code 1', exitCode: 1 });
    await expect(s.queue.complete(again!.id, { status: 'succeeded' })).rejects.toBeInstanceOf(StaleLease);
    expect(s.task(again!.taskId)).toMatchObject({ status: 'failed', error: 'exited with code 1', result: null });
    expect(s.job(id).status).toBe('failed');
    expect(await s.log(lease!.taskId)).not.toContain('late');
  });

  it('a task whose lease was lost twice fails, saying why', async () => {
    const s = await setup();
    const id = await s.submit({});
    for (let attempt = 1; attempt <= 2; attempt++) {
      const [lease] = await s.queue.lease(OFFER, 1);
      expect(lease!.attempt).toBe(attempt);
      s.clock.advance(LEASE_MS);
      await settle();
    }
    expect(await s.queue.lease(OFFER, 1)).toEqual([]);
    expect(s.job(id)).toMatchObject({ status: 'failed' });
    expect(s.job(id).error).toContain('worker fake stopped renewing its lease (30s) (2 attempts)');
  });

  it('release: the worker gives the task back; it runs again, the attempt counted; nothing more is taken on that lease', async () => {
    const s = await setup();
    await s.submit({});
    const [lease] = await s.queue.lease(OFFER, 1);
    await s.queue.release(lease!.id, 'the worker stopped while the task ran');
    await expect(s.queue.report(lease!.id, { output: 'x' })).rejects.toBeInstanceOf(StaleLease);
    expect(s.task(lease!.taskId)).toMatchObject({ status: 'queued', attempt: 1 });
    expect(await s.log(lease!.taskId)).toContain('(the worker stopped while the task ran: attempt 1 was interrupted)');
    expect(await s.queue.lease(OFFER, 1)).toMatchObject([{ taskId: lease!.taskId, attempt: 2 }]);
  });

  it('a release while the server stops is not counted as an attempt', async () => {
    const s = await setup();
    await s.submit({});
    const [lease] = await s.queue.lease(OFFER, 1);
    s.queue.stop();
    await s.queue.release(lease!.id, 'the worker stopped while the task ran');
    expect(s.task(lease!.taskId)).toMatchObject({ status: 'queued', attempt: 0 });
    expect(await s.queue.lease(OFFER, 1)).toEqual([]);
  });

  it('cancel: queued tasks cancelled, the worker told; its cancelled outcome finishes the job', async () => {
    const s = await setup();
    const id = await s.submit({ payload: { n: [1, 2, 3] }, fan_out: { by: 'n' } });
    const leases = await s.queue.lease(OFFER, 2);
    const cancelling = s.queue.cancel(id);
    expect(s.revoked).toEqual(leases.map((l) => ({ leaseId: l.id, why: 'cancelled' })));
    expect(await s.queue.renew(leases[0]!.id)).toMatchObject({ cancel: true });
    for (const lease of leases) await s.queue.complete(lease.id, { status: 'cancelled', error: 'cancelled' });
    await cancelling;
    expect(s.job(id)).toMatchObject({ status: 'cancelled' });
    expect(s.jobs.counts(id)).toMatchObject({ cancelled: 3 });
    expect(await s.queue.lease(OFFER, 5)).toEqual([]);
  });

  it('cancel: a worker that does not answer loses its lease; the job is cancelled and its late outcome refused', async () => {
    const s = await setup();
    const id = await s.submit({});
    const [lease] = await s.queue.lease(OFFER, 1);
    const cancelling = s.queue.cancel(id);
    await s.clock.whenSleeping(2); // the lease's expiry and the cancel's wait
    s.clock.advance(15_000);
    await cancelling;
    expect(s.job(id)).toMatchObject({ status: 'cancelled' });
    expect(s.task(lease!.taskId)).toMatchObject({ status: 'cancelled' });
    await expect(s.queue.complete(lease!.id, { status: 'succeeded' })).rejects.toBeInstanceOf(StaleLease);
    expect(s.task(lease!.taskId).status).toBe('cancelled');
    expect(s.clock.sleeping()).toBe(0);
  });

  it('cancel: a job of more queued tasks than a slice ends them all, letting other work run between the slices', async () => {
    const s = await setup();
    const tasks = CANCEL_SLICE * 2 + 5;
    const id = await s.submit({ payload: { n: Array.from({ length: tasks }, (_, i) => i) }, fan_out: { by: 'n' } });
    let turns = 0;
    let counting = true;
    const count = (): void => {
      turns++;
      if (counting) setImmediate(count);
    };
    setImmediate(count);
    await s.queue.cancel(id);
    counting = false;
    expect(turns, 'the event loop turned between the slices').toBeGreaterThanOrEqual(2);
    expect(s.job(id)).toMatchObject({ status: 'cancelled', error: 'cancelled' });
    expect(s.jobs.counts(id)).toMatchObject({ cancelled: tasks, queued: 0 });
    expect(await s.queue.lease(OFFER, 5)).toEqual([]);
  });

  it('crash recovery: a job cancelled while its task ran (or before its queued tasks were all ended) ends cancelled at the next start', async () => {
    const dir = await tempDir('cycle-queue-cancel-crash-');
    const s = await setup(dir);
    const id = await s.submit({ payload: { n: [1, 2, 3] }, fan_out: { by: 'n' } });
    const [lease] = await s.queue.lease(OFFER, 1);
    // A crash right after the cancel's mark: a task running, two still queued.
    s.queue.stop();
    s.db.prepare('UPDATE jobs SET cancel_requested = 1 WHERE id = ?').run(id);
    const restarted = await setup(dir);
    restarted.queue.recover();
    expect(restarted.job(id)).toMatchObject({ status: 'cancelled', error: 'cancelled' });
    expect(restarted.task(lease!.taskId)).toMatchObject({ status: 'cancelled' });
    expect(restarted.jobs.counts(id)).toMatchObject({ cancelled: 3, queued: 0, running: 0 });
  });

  it('timeouts: the lease carries timeout_s; the worker reports the timed-out task as failed', async () => {
    const s = await setup();
    const id = await s.submit({ timeout_s: 1 });
    const [lease] = await s.queue.lease(OFFER, 1);
    expect(lease!.timeoutS).toBe(1);
    await s.queue.complete(lease!.id, { status: 'failed', error: 'timed out after 1s', exitCode: 137 });
    expect(s.job(id)).toMatchObject({ status: 'failed', error: '1 of 1 task(s) failed: timed out after 1s' });
  });

  it('a task the worker cannot run stays queued with the reason (it is not failed); the next task is leased in its place; a worker that can run it gets it', async () => {
    const s = await setup();
    const gpuJob = await s.submit({}, 'g');
    const plain = await s.submit({});
    const leases = await s.queue.lease(OFFER, 1);
    expect(leases.map((l) => l.jobId)).toEqual([plain]);
    expect(s.job(gpuJob)).toMatchObject({ status: 'queued', error: null });
    expect((await s.queue.placement(gpuJob))?.reason).toBe('no machine has a GPU for a task that needs one (this server: no driver)');
    expect(await s.queue.lease({ workerId: 'old-driver', gpu: { ok: true, cuda: '12.2' } }, 1)).toEqual([]);
    expect(s.job(gpuJob).status).toBe('queued');
    expect((await s.queue.placement(gpuJob))?.reason).toBe('no machine supports CUDA 12.4; best: this server with 12.2');
    expect(await s.queue.lease({ workerId: 'new-driver', gpu: { ok: true, cuda: '12.8' } }, 1)).toMatchObject([{ jobId: gpuJob, gpus: true }]);
    expect(await s.queue.placement(gpuJob)).toBeUndefined();
  });

  it('directives: _shared.resolve values resolved by the queue, _artifacts.download named for the worker to fetch', async () => {
    const s = await setup();
    const first = await s.submit({});
    const [lease] = await s.queue.lease(OFFER, 1);
    const stored = `${s.layout.dataDir}/model.bin`;
    await fs.writeFile(stored, 'weights');
    const model = { path: 'out/model.bin', absolute: stored, size: 7, firstSeen: 0, lastCaptured: 0, mtimeNs: 0n, uploadKey: 0 };
    await s.queue.report(lease!.id, {
      artifact: { captured: model },
    });
    await s.queue.complete(lease!.id, { status: 'succeeded', result: { score: 9 }, exitCode: 0 });
    await s.submit({
      depends_on: [first],
      payload: {
        _shared: { resolve: { score: { job: first, path: 'items.0.result.score' } } },
        _artifacts: { download: { m: { job_id: first, artifact: 'model' } } },
      },
    });
    const [next] = await s.queue.lease(OFFER, 1);
    expect(next!.payload).toMatchObject({ _shared: { values: { score: 9 } }, _artifacts: { paths: { m: '/computalot/artifacts/m/model.bin' } } });
    expect(next!.downloads).toEqual([{ name: 'm', artifactId: expect.stringMatching(/^art_/), fileName: 'model.bin' }]);
  });

  it('crash recovery: a task running at start runs again, the attempt counted; at the second it fails', async () => {
    const dir = await tempDir('cycle-queue-crash-');
    const s = await setup(dir);
    const id = await s.submit({});
    const [lease] = await s.queue.lease(OFFER, 1);
    // A crash: the queue is gone without a word; its rows still say running.
    const restarted = await setup(dir);
    restarted.queue.recover();
    expect(restarted.task(lease!.taskId)).toMatchObject({ status: 'queued', attempt: 1 });
    const [again] = await restarted.queue.lease(OFFER, 1);
    expect(again).toMatchObject({ taskId: lease!.taskId, attempt: 2 });
    const third = await setup(dir);
    third.queue.recover();
    expect(third.task(lease!.taskId)).toMatchObject({ status: 'failed', error: 'the server stopped while the task ran (2 attempts)' });
    expect(third.job(id).status).toBe('failed');
  });

  describe('placement on enrolled machines', () => {
    /** A fake registry: enrolled machines by name, each may take work unless `refuse` says why not, with 4 slots unless `slots` says. */
    function pool(
      machines: Record<string, MachineInventory>,
      refuse: Record<string, string> = {},
      slots: Record<string, number> = {},
    ): MachinePool & { machines: Record<string, MachineInventory> } {
      return {
        machines,
        mayTakeWork: (name) => (refuse[name] ? { ok: false, reason: refuse[name]! } : { ok: true }),
        whyIdleNow: (name) => refuse[name],
        slotsOf: (name) => (name in machines ? (slots[name] ?? 4) : undefined),
        placementMachines: () => Object.entries(machines).map(([name, inventory]) => ({ name, inventory })),
      };
    }
    const offerOf = (name: string, inventory: MachineInventory): WorkerOffer => ({ workerId: `daemon-${name}`, machine: { name, inventory } });

    it("[job].cuda is a minimum against each machine's driver: none / 12.4 / 13.0; where none can, the task waits with the reason", async () => {
      const machines = pool({ 'cpu-a': cpuInventory(), 'gpu-b': gpuInventory(OLDER_DRIVER) });
      const s = await setup(undefined, manualClock(), machines);
      const newer = await s.submit({}, 'h'); // [job].cuda = "13.0"
      expect(await s.queue.lease(offerOf('cpu-a', machines.machines['cpu-a']!), 4)).toEqual([]);
      expect(await s.queue.lease(offerOf('gpu-b', machines.machines['gpu-b']!), 4)).toEqual([]);
      expect(s.job(newer)).toMatchObject({ status: 'queued', error: null });
      const placement = await s.queue.placement(newer);
      expect(placement?.reason).toBe('no machine supports CUDA 13.0; best: gpu-b with 12.4');
      expect(placement?.workers).toEqual([
        { name: 'cpu-a', reason: 'the task needs a GPU: cpu-a has none (nvidia-smi: command not found)' },
        { name: 'gpu-b', reason: '[job].cuda = "13.0" needs a newer driver: gpu-b supports CUDA 12.4' },
      ]);
      expect(s.queue.notPlacedOn('gpu-b', machines.machines['gpu-b']!)).toEqual([
        { job_id: newer, reason: '[job].cuda = "13.0" needs a newer driver: gpu-b supports CUDA 12.4' },
      ]);
      // A machine with a newer driver enrols: the task goes there, the log names it.
      machines.machines['gpu-c'] = gpuInventory(NEWER_DRIVER);
      expect((await s.queue.placement(newer))?.reason).toBeNull();
      const [lease] = await s.queue.lease(offerOf('gpu-c', machines.machines['gpu-c']!), 4);
      expect(lease).toMatchObject({ jobId: newer, gpus: true, gpuIndices: [0] });
      expect(await s.log(lease!.taskId)).toContain('[cycle] task 0 assigned to machine gpu-c on GPU 0 (attempt 1)\n');
      expect((await s.log(lease!.taskId)).match(/task 0 (started|assigned)/g), 'one line for the start, not two').toHaveLength(1);
      // The event says so too: `job logs --follow` and the page's all-tasks log read the line from it.
      expect(jobLog(s.db, newer, 100).lines).toContainEqual({ index: 0, source: 'system', text: 'task 0 assigned to machine gpu-c on GPU 0 (attempt 1)' });
      expect(s.queue.notPlacedOn('gpu-b', machines.machines['gpu-b']!), 'a job with no queued task is not "not placed"').toEqual([]);
      expect(s.queue.runningOn('gpu-c')).toEqual([{ job_id: newer, task_id: lease!.taskId, started_at: expect.any(String) }]);
      // A [job].cuda = "12.4" job: the older driver meets it; a machine without a GPU never gets it.
      const older = await s.submit({}, 'g');
      expect(await s.queue.lease(offerOf('cpu-a', machines.machines['cpu-a']!), 4)).toEqual([]);
      expect(await s.queue.lease(offerOf('gpu-b', machines.machines['gpu-b']!), 4)).toMatchObject([{ jobId: older, gpuIndices: [0] }]);
      // A plain job runs anywhere, the machine without a GPU included.
      const plain = await s.submit({});
      expect(await s.queue.lease(offerOf('cpu-a', machines.machines['cpu-a']!), 4)).toMatchObject([{ jobId: plain, gpus: false }]);
    });

    it('GPU tasks get whole GPUs of their own: GPUs leased on a machine are not free; a task needing more GPUs than any machine has waits', async () => {
      const twoGpus = gpuInventory(NEWER_DRIVER, {
        gpus: [
          { index: 0, name: 'L40S', memory_mib: 46_068 },
          { index: 1, name: 'L40S', memory_mib: 46_068 },
        ],
      });
      const machines = pool({ 'gpu-c': twoGpus });
      const s = await setup(undefined, manualClock(), machines);
      await s.submit({ payload: { n: [1, 2, 3] }, fan_out: { by: 'n' }, profile: 'gpu' });
      const leases = await s.queue.lease(offerOf('gpu-c', twoGpus), 3);
      expect(leases.map((l) => l.gpuIndices)).toEqual([[0], [1]]);
      expect(await s.queue.lease(offerOf('gpu-c', twoGpus), 1)).toEqual([]);
      await s.queue.complete(leases[1]!.id, { status: 'succeeded' });
      expect((await s.queue.lease(offerOf('gpu-c', twoGpus), 1)).map((l) => l.gpuIndices)).toEqual([[1]]);
      const four = await s.submit({ requirements: { gpu: 4 } });
      expect((await s.queue.placement(four))?.reason).toBe('no machine has 4 GPUs; best: gpu-c with 2 GPUs');
    });

    it('requirements are minimums against the inventory (cpu, memory, storage); the reason names the best machine', async () => {
      const GIB = 1024 ** 3;
      const machines = pool({
        small: cpuInventory({ cpus: 4, memory_bytes: 8 * GIB, free_disk_bytes: 20 * GIB }),
        big: cpuInventory({ cpus: 8, memory_bytes: 32 * GIB, free_disk_bytes: 500 * GIB }),
      });
      const s = await setup(undefined, manualClock(), machines);
      const cpus = await s.submit({ requirements: { cpu: 16 } });
      const memory = await s.submit({ requirements: { memory_gb: 64 } });
      const disk = await s.submit({ requirements: { storage_gb: 1000 } });
      const fits = await s.submit({ requirements: { cpu: 6, memory_gb: 16 } });
      expect((await s.queue.placement(cpus))?.reason).toBe('no machine has 16 CPUs; best: big with 8 CPUs');
      expect((await s.queue.placement(memory))?.reason).toBe('no machine has 64.0 GiB of memory; best: big with 32.0 GiB of memory');
      expect((await s.queue.placement(disk))?.reason).toBe('no machine has 1000.0 GiB of free disk; best: big with 500.0 GiB of free disk');
      expect(await s.queue.lease(offerOf('small', machines.machines['small']!), 4)).toEqual([]);
      expect(await s.queue.lease(offerOf('big', machines.machines['big']!), 4)).toMatchObject([{ jobId: fits }]);
      expect(s.job(cpus).status).toBe('queued');
    });

    it("a machine holds at most its slots' worth of leases and one prepared ahead, whatever it asks for", async () => {
      const machines = pool({ 'cpu-a': cpuInventory() }, {}, { 'cpu-a': 2 });
      const s = await setup(undefined, manualClock(), machines);
      await s.submit({ payload: { n: [1, 2, 3, 4, 5] }, fan_out: { by: 'n' } });
      const offer = offerOf('cpu-a', machines.machines['cpu-a']!);
      expect(await s.queue.lease(offer, 10)).toHaveLength(2 + LEASES_AHEAD);
      expect(await s.queue.lease(offer, 10)).toEqual([]);
      expect(await s.queue.lease(offerOf('ghost', cpuInventory()), 10), 'a machine not enrolled gets nothing').toEqual([]);
    });

    it('a machine that may not take work (draining, paused, busy) is offered nothing, and the reason says so', async () => {
      const machines = pool({ 'gpu-b': gpuInventory(OLDER_DRIVER) }, { 'gpu-b': 'machine gpu-b is draining' });
      const s = await setup(undefined, manualClock(), machines);
      const id = await s.submit({});
      expect(await s.queue.lease(offerOf('gpu-b', machines.machines['gpu-b']!), 1)).toEqual([]);
      expect(await s.queue.placement(id)).toMatchObject({ reason: 'the machines that can run it take no work now: machine gpu-b is draining' });
    });

    it("an expired or removed machine's lease: the task goes back to the queue, the log naming the machine and why", async () => {
      const machines = pool({ 'gpu-b': gpuInventory(OLDER_DRIVER), 'gpu-c': gpuInventory(NEWER_DRIVER) });
      const s = await setup(undefined, manualClock(), machines);
      await s.submit({});
      const [lease] = await s.queue.lease(offerOf('gpu-b', machines.machines['gpu-b']!), 1);
      s.clock.advance(LEASE_MS + 1);
      await settle();
      expect(s.task(lease!.taskId)).toMatchObject({ status: 'queued' });
      expect(await s.log(lease!.taskId)).toContain('machine gpu-b stopped renewing its lease (30s)');
      const [second] = await s.queue.lease(offerOf('gpu-c', machines.machines['gpu-c']!), 1);
      expect(await s.log(second!.taskId)).toContain('[cycle] task 0 assigned to machine gpu-c (attempt 2)');
      s.queue.releaseMachine('gpu-c', 'machine gpu-c was removed');
      expect(s.revoked).toContainEqual({ leaseId: second!.id, why: 'removed' });
      expect(s.task(second!.taskId)).toMatchObject({ status: 'failed' }); // its second attempt: MAX_ATTEMPTS
      expect(await s.log(second!.taskId)).toContain('machine gpu-c was removed');
      await expect(s.queue.report(second!.id, { output: 'late' })).rejects.toBeInstanceOf(StaleLease);
    });
  });
});

describe('waiting machines are woken in turn, not all at once (issue 20: 200 long polls)', () => {
  const offer = (workerId: string): WorkerOffer => ({ workerId, gpu: { ok: false, reason: 'no driver' } });

  it('a kick wakes the first in line; one that finds work wakes the next; one that finds none ends it', async () => {
    const s = await setup();
    const names = ['m0', 'm1', 'm2', 'm3', 'm4'];
    const turns = names.map((name) => s.queue.awaitTurn(name));
    const woken = () => turns.map((t) => t.isWoken());
    s.queue.kick(); // nothing queued: one machine asks, finds nothing, and nobody else is woken
    expect(woken()).toEqual([true, false, false, false, false]);
    turns[0]!.end(true);
    expect(await s.queue.lease(offer('m0'), 1)).toEqual([]);
    expect(woken()).toEqual([true, false, false, false, false]);
    turns[0] = s.queue.awaitTurn('m0'); // back in line, at its end
    // Two tasks: the first woken leases one and wakes the next, which leases the other; the third finds none.
    await s.submit({ payload: { n: [1, 2] }, fan_out: { by: 'n' } });
    expect(woken()).toEqual([false, true, false, false, false]);
    turns[1]!.end(true);
    expect(await s.queue.lease(offer('m1'), 1)).toHaveLength(1);
    expect(woken()).toEqual([false, true, true, false, false]);
    turns[2]!.end(true);
    expect(await s.queue.lease(offer('m2'), 1)).toHaveLength(1);
    expect(woken()).toEqual([false, true, true, true, false]);
    turns[3]!.end(true);
    expect(await s.queue.lease(offer('m3'), 1)).toEqual([]);
    expect(woken()).toEqual([false, true, true, true, false]);
    // A woken machine that leaves without asking (its poll ended) passes its wake on.
    const next = s.queue.awaitTurn('m3');
    s.queue.kick();
    expect(turns[4]!.isWoken()).toBe(true);
    turns[4]!.end(false);
    expect(turns[0]!.isWoken()).toBe(true);
    turns[0]!.end(false);
    expect(next.isWoken()).toBe(true);
    next.end(false); // the line is done: nobody is left to wake
  });

  it('work a machine cannot run is passed on to the next in line, each machine woken once a round', async () => {
    const s = await setup();
    await s.submit({}, 'g'); // needs CUDA 12.4: none of these machines has a GPU
    const turns = ['c0', 'c1', 'c2'].map((name) => s.queue.awaitTurn(name));
    s.queue.kick();
    for (const [i, turn] of turns.entries()) {
      expect(turn.isWoken()).toBe(true);
      turn.end(true);
      expect(await s.queue.lease(offer(`c${i}`), 1)).toEqual([]);
      turns[i] = s.queue.awaitTurn(`c${i}`); // back in line
    }
    // Every machine had its turn this round: the wake ends instead of going round forever.
    expect(turns.map((t) => t.isWoken())).toEqual([false, false, false]);
    for (const turn of turns) turn.end(false);
  });
});

describe('a fan-out is inserted in chunks, invisible until whole (issue 22)', () => {
  it('a fan-out interrupted mid-insert (the server killed) leaves no job and no task after the restart', async () => {
    const dir = await tempDir('cycle-queue-');
    const s = await setup(dir);
    const prepared = await s.jobs.prepare({ project: 'p', payload: { n: Array.from({ length: 2_000 }, (_, i) => i) }, fan_out: { by: 'n' } });
    const inserting = s.jobs.insert([prepared]);
    const written = () => (s.db.prepare('SELECT COUNT(*) AS n FROM tasks').get() as { n: number }).n;
    // The event loop runs between chunks: wait until some chunks are written, not all.
    for (let turns = 0; written() < 500; turns++) {
      expect(turns).toBeLessThan(1000);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(written()).toBeLessThan(2_000);
    const [hidden] = (s.db.prepare('SELECT id FROM jobs WHERE inserting = 1').all() as Array<{ id: string }>).map((r) => r.id);
    expect(hidden).toBeDefined();
    // Meanwhile nothing sees it: not read, not listed, not leased.
    expect(s.jobs.row(hidden!)).toBeUndefined();
    expect(await s.queue.lease(OFFER, 5)).toEqual([]);
    // The process dies here: nothing more is written (the database is closed under the insert).
    s.db.close();
    await expect(inserting).rejects.toThrow();
    const restarted = await setup(dir);
    restarted.queue.recover();
    expect(restarted.db.prepare('SELECT COUNT(*) AS n FROM jobs').get()).toEqual({ n: 0 });
    expect(restarted.db.prepare('SELECT COUNT(*) AS n FROM tasks').get()).toEqual({ n: 0 });
    expect(await restarted.queue.lease(OFFER, 5)).toEqual([]);
  });
});
