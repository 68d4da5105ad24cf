import fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { JOB_TYPES } from '../../src/api/job-kinds.js';
import { type JobRequest, jobRequestSchema, type JobRequestInput } from '../../src/api/schemas.js';
import { openDatabase, parseJson, type DB } from '../../src/server/db.js';
import { DomainError, invalid } from '../../src/server/errors.js';
import { EventLog } from '../../src/server/events.js';
import { JobService, type TaskRow } from '../../src/server/jobs.js';
import type { JobKind } from '../../src/server/kinds/kind.js';
import { JOB_KINDS, kindOf } from '../../src/server/kinds/registry.js';
import { checked } from '../../src/server/kinds/shared.js';
import { layout as dataLayout } from '../../src/server/layout.js';
import { composePayload, planJob } from '../../src/server/planner.js';
import { ProjectService } from '../../src/server/projects.js';
import type { WorkerOffer } from '../../src/server/queue/lease.js';
import { WorkQueue } from '../../src/server/queue/work-queue.js';
import { JobStates } from '../../src/server/state.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { manualClock, tempDir } from '../helpers/context.js';
import { rawTarGz, VALID_PROJECT } from '../helpers/tarballs.js';

/**
 * Job kinds are modules (src/server/kinds/): the registry lists every kind the request schema
 * and the CLI accept, each plans and aggregates through the same entry points, and a kind made
 * here (its module and a registry entry, nothing else) runs through submission, leasing and
 * results like the built-in ones.
 */

const request = (input: Partial<JobRequestInput>): JobRequest => jobRequestSchema.parse({ project: 'p', ...input });

/** A task row as the tasks table holds it (only what aggregates read matters). */
const row = (fields: Partial<TaskRow> & Pick<TaskRow, 'idx' | 'payload'>): TaskRow => ({
  id: `task_${fields.idx}`,
  job_id: 'job_1',
  kind: 'task',
  status: 'succeeded',
  attempt: 1,
  items: 1,
  command: null,
  result: null,
  error: null,
  exit_code: null,
  latest_progress: null,
  output_tail: '',
  last_failed: null,
  started_at: null,
  finished_at: null,
  ...fields,
});

/** A kind's aggregate over its planned tasks, each given `result`. */
function aggregateOf(req: JobRequest, result: (payload: Record<string, unknown>, index: number) => unknown, withResults = true): unknown {
  const plan = planJob(req);
  const tasks = [...plan.tasks()].map((task, idx) =>
    row({ idx, kind: task.kind, payload: JSON.stringify(task.part), result: JSON.stringify(result(composePayload(plan.base, task.part), idx)) }),
  );
  return kindOf(req.type).aggregate({
    tasks: () => tasks,
    payloadOf: (t) => (JSON.parse(t.payload) as { merge?: Record<string, unknown> }).merge ?? {},
    withResults,
  });
}

describe('the job kind registry', () => {
  it('lists every kind the request schema and the CLI accept, each under its own name', () => {
    expect(Object.keys(JOB_KINDS)).toEqual([...JOB_TYPES]);
    for (const [name, kind] of Object.entries(JOB_KINDS)) expect(kind.name).toBe(name);
    expect(jobRequestSchema.shape.type.unwrap().options).toEqual([...JOB_TYPES]);
  });

  it('refuses a kind it does not list, naming type and the kinds it has', () => {
    const error = (() => {
      try {
        kindOf('grid_search');
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(DomainError);
    expect(error).toMatchObject({ kind: 'invalid', code: 'invalid_job', field: 'type' });
    expect((error as Error).message).toMatch(/structured_runner, sweep, map_reduce, benchmark/);
    // An own property only: a name from Object.prototype is not a kind.
    expect(() => kindOf('constructor')).toThrow(DomainError);
  });

  it('structured_runner: plans its fan-out, no aggregate', () => {
    const req = request({ payload: { n: [1, 2, 3] }, fan_out: { by: 'n' } });
    expect(planJob(req).count).toBe(3);
    expect(aggregateOf(req, () => ({ ok: true }))).toBeNull();
  });

  it('sweep: one task per grid point, the aggregate a result per point (left out over the page budget)', () => {
    const req = request({ type: 'sweep', payload: { grid: { lr: [1, 2], bs: [8] } } });
    expect(planJob(req).count).toBe(2);
    const result = (payload: Record<string, unknown>) => ({ loss: (payload.params as { lr: number }).lr * 10 });
    expect(aggregateOf(req, result)).toEqual({
      points: [
        { params: { lr: 1, bs: 8 }, status: 'succeeded', result: { loss: 10 } },
        { params: { lr: 2, bs: 8 }, status: 'succeeded', result: { loss: 20 } },
      ],
    });
    expect(aggregateOf(req, result, false)).toMatchObject({ points: [{ result: null }, { result: null }], results_omitted: true });
  });

  it('map_reduce: maps then one reduce, which waits for the maps and receives their results', () => {
    const req = request({ type: 'map_reduce', payload: { n: [1, 2] }, fan_out: { by: 'n' }, reduce_command: ['reduce'] });
    expect([...planJob(req).tasks()].map((t) => t.kind)).toEqual(['map', 'map', 'reduce']);
    expect(aggregateOf(req, (_payload, i) => ({ i }))).toEqual({ reduce: { status: 'succeeded', result: { i: 2 }, error: null }, maps: 2 });
    const reduce = row({ idx: 2, kind: 'reduce', payload: '{}', status: 'queued' });
    const reads = (unfinished: boolean) => ({
      hasUnfinishedMaps: () => unfinished,
      resultBytes: () => 10,
      mapResults: () => [{ index: 0, status: 'succeeded', result: 1, error: null }],
    });
    const kind = kindOf('map_reduce');
    expect(kind.mayStart?.(reduce, reads(true))).toBe(false);
    expect(kind.mayStart?.(reduce, reads(false))).toBe(true);
    expect(kind.receives?.(reduce, reads(false))).toEqual({ map_results: [{ index: 0, status: 'succeeded', result: 1, error: null }] });
    expect(kind.receives?.(row({ idx: 0, kind: 'map', payload: '{}' }), reads(false))).toEqual({});
  });

  it('benchmark: strategies × repeats, the aggregate per strategy with its metrics', () => {
    const req = request({ type: 'benchmark', payload: { strategies: { fast: { k: 1 }, slow: { k: 2 } }, repeats: 2 } });
    expect(planJob(req).count).toBe(4);
    const aggregate = aggregateOf(req, (payload) => ({ score: payload.k as number })) as { strategies: Record<string, { runs: number; metrics: unknown }> };
    expect(aggregate.strategies.fast).toMatchObject({ runs: 2, metrics: { score: { mean: 1, min: 1, max: 1 } } });
    expect(aggregate.strategies.slow).toMatchObject({ runs: 2, metrics: { score: { mean: 2, min: 2, max: 2 } } });
  });
});

/**
 * A kind made here: `countdown` runs payload.from, from-1, ... 1 (one task each); every task
 * receives `_countdown_of`; its aggregate is the sum of the results. Its module is this object,
 * its registry entry the spread below: nothing else is added to run it.
 */
const countdown: JobKind = {
  name: 'countdown',
  plan(req, { directives, command }) {
    const from = req.payload.from;
    if (typeof from !== 'number' || !Number.isInteger(from) || from < 1)
      throw invalid('invalid_job', 'payload.from must be a positive integer', 'payload.from');
    return checked({
      count: from,
      bytes: from * 16,
      taskPayloadBytes: 64,
      base: { item: directives, directives },
      *tasks() {
        for (let n = from; n >= 1; n--) yield { kind: 'task', part: { merge: { n } }, items: 1, ...(command ? { command } : {}) };
      },
    });
  },
  aggregate({ tasks }) {
    let sum = 0;
    for (const task of tasks()) sum += parseJson<number>(task.result, 0);
    return { sum };
  },
  receives: (task) => ({ _countdown_of: task.job_id }),
};

const opened: DB[] = [];
afterEach(() => {
  for (const db of opened.splice(0)) db.close();
});

/** A data folder, its database and services, and the project `p` pushed: what a job service needs. */
async function storeWithProject() {
  const layout = dataLayout(await tempDir('cycle-kinds-'));
  await fs.mkdir(layout.dataDir, { recursive: true });
  const db = openDatabase(layout.db);
  opened.push(db);
  const events = new EventLog(db);
  const states = new JobStates({ db, events, layout });
  const docker = new FakeDocker();
  const projects = new ProjectService({
    db,
    events,
    layout,
    docker: async () => docker,
    limits: { maxUploadBytes: 1 << 30, maxBytes: 1 << 30, maxFiles: 10_000, projectQuotaBytes: 1 << 30, serverQuotaBytes: 1 << 30 },
    checkInit: () => undefined,
    log: () => undefined,
  });
  await projects.push('p', Readable.from(rawTarGz(VALID_PROJECT)), { rebuild: false, clean: false });
  return { layout, db, events, states, projects };
}

describe('a new job kind needs only its module and a registry entry', () => {
  it('is planned, leased (with what its tasks receive) and aggregated through the service', async () => {
    const { layout, db, events, states, projects } = await storeWithProject();
    const jobs = new JobService({ db, states, projects, layout, hasGpu: async () => false, onSubmitted: () => undefined, kinds: { ...JOB_KINDS, countdown } });
    const queue = new WorkQueue({ db, events, states, jobs, projects, layout, clock: manualClock(), log: () => undefined, leaseMs: 30_000 });

    // The request schema accepts the built-in kinds only: a new kind's request comes in already validated here.
    const countdownRequest = { ...request({ payload: { from: 3 } }), type: 'countdown' } as unknown as JobRequest;
    await expect(jobs.prepareRequest({ ...countdownRequest, payload: { from: 0 } })).rejects.toMatchObject({ kind: 'invalid', field: 'payload.from' });
    const [job] = await jobs.insert([await jobs.prepareRequest(countdownRequest)]);
    expect(jobs.counts(job!.id).total).toBe(3);

    const offer: WorkerOffer = { workerId: 'fake', gpu: { ok: false, reason: 'no driver' } };
    const leases = await queue.lease(offer, 10);
    expect(leases.map((l) => l.payload)).toEqual([3, 2, 1].map((n) => ({ n, _countdown_of: job!.id })));
    for (const lease of leases) await queue.complete(lease.id, { status: 'succeeded', result: (lease.payload.n as number) * 10, exitCode: 0 });

    const results = jobs.results(jobs.require(job!.id));
    expect(results).toMatchObject({ type: 'countdown', status: 'completed', complete: true, aggregate: { sum: 60 } });
  });
});

describe('submitting a big job leaves the event loop free', () => {
  it('prepare lets the event loop turn between the request check and the plan (issue 22: one ~50 ms piece of a 100,000-task submit)', async () => {
    const { layout, db, states, projects } = await storeWithProject();
    let turned = false;
    let turnedBeforePlan: boolean | undefined;
    const runner = JOB_KINDS.structured_runner;
    const watched: JobKind = {
      ...runner,
      plan: (request, planning) => {
        turnedBeforePlan = turned;
        return runner.plan(request, planning);
      },
    };
    const jobs = new JobService({
      db,
      states,
      projects,
      layout,
      hasGpu: async () => false,
      onSubmitted: () => undefined,
      kinds: { ...JOB_KINDS, structured_runner: watched },
    });
    const body = { project: 'p', payload: { n: Array.from({ length: 1000 }, (_, i) => i) }, fan_out: { by: 'n' } };
    // What a request arriving meanwhile would get: a turn of the event loop (setImmediate).
    setImmediate(() => (turned = true));
    const prepared = await jobs.prepare(body);
    expect(prepared.plan.count).toBe(1000);
    expect(turnedBeforePlan).toBe(true);
  });
});
