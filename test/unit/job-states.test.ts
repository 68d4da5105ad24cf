import fs from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { JOB_STATUSES, TASK_STATUSES, type JobStatus, type TaskStatus } from '../../src/api/schemas.js';
import { type DB, openDatabase } from '../../src/server/db.js';
import { EventLog, type StoredEvent } from '../../src/server/events.js';
import type { JobRow, TaskRow } from '../../src/server/jobs.js';
import { layout } from '../../src/server/layout.js';
import {
  InternalError,
  JOB_SETTLED_RACES,
  JOB_TRANSITIONS,
  JobStates,
  TASK_SETTLED_RACES,
  TASK_TRANSITIONS,
  taskCounts,
  type FinishedJobStatus,
} from '../../src/server/state.js';
import { manualClock, tempDir } from '../helpers/context.js';

let db: DB | undefined;
afterEach(() => {
  db?.close();
  db = undefined;
});

const START = Date.parse('2026-11-23T12:00:00Z');
const FINAL_JOB_STATUSES: FinishedJobStatus[] = ['completed', 'partial', 'failed', 'cancelled'];

/** JobStates alone on a temporary database, with a clock that moves only when the test says. */
async function setup() {
  const where = layout(await tempDir('cycle-job-states-'));
  db = openDatabase(where.db);
  const clock = manualClock(START);
  const events = new EventLog(db, clock);
  const heard: StoredEvent[] = [];
  events.subscribe((event) => heard.push(event));
  const states = new JobStates({ db, events, layout: where, clock });
  const finished: JobRow[] = [];
  states.onJobFinished((job) => finished.push(job));
  const database = db;
  let seq = 0;
  const addJob = (status: JobStatus): JobRow => {
    const id = `job_${++seq}`;
    database
      .prepare("INSERT INTO jobs (id, seq, project, type, status, request, created_at) VALUES (?, ?, 'p', 'structured_runner', ?, '{}', ?)")
      .run(id, seq, status, new Date(START).toISOString());
    return job(id);
  };
  const addTask = (jobId: string, status: TaskStatus, idx = 0): TaskRow => {
    const id = `task_${jobId}_${idx}`;
    database
      .prepare("INSERT INTO tasks (id, job_id, idx, kind, status, attempt, payload) VALUES (?, ?, ?, 'task', ?, ?, '{}')")
      .run(id, jobId, idx, status, status === 'queued' ? 0 : 1);
    return task(id);
  };
  const job = (id: string): JobRow => database.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow;
  const task = (id: string): TaskRow => database.prepare('SELECT * FROM tasks WHERE id = ?').get(id) as TaskRow;
  const stored = (): StoredEvent[] => events.since({}, 0);
  return { db: database, clock, events, states, heard, finished, addJob, addTask, job, task, stored, where };
}

const iso = (ms: number): string => new Date(ms).toISOString();

describe('the transition tables', () => {
  it('name every status, and a final status leads nowhere', () => {
    expect(Object.keys(JOB_TRANSITIONS).sort()).toEqual([...JOB_STATUSES].sort());
    expect(Object.keys(TASK_TRANSITIONS).sort()).toEqual([...TASK_STATUSES].sort());
    for (const status of FINAL_JOB_STATUSES) expect(JOB_TRANSITIONS[status]).toEqual([]);
    for (const status of ['succeeded', 'failed', 'cancelled'] as const) expect(TASK_TRANSITIONS[status]).toEqual([]);
    // A settled race is never an allowed transition (it would then not be a no-op).
    for (const race of JOB_SETTLED_RACES) for (const to of race.wanted) expect(JOB_TRANSITIONS[race.found]).not.toContain(to);
    for (const race of TASK_SETTLED_RACES) for (const to of race.wanted) expect(TASK_TRANSITIONS[race.found]).not.toContain(to);
  });
});

describe('allowed transitions commit with their event, stamped by the injected clock', () => {
  it('planning → queued: the submitted job becomes visible, with its two events', async () => {
    const t = await setup();
    const job = t.addJob('planning');
    t.db.prepare('UPDATE jobs SET inserting = 1 WHERE id = ?').run(job.id);
    t.clock.advance(1000);
    t.states.queueSubmitted([{ id: job.id, project: 'p', tasks: 3 }]);
    expect(t.job(job.id)).toMatchObject({ status: 'queued', inserting: 0 });
    expect(t.heard.map((e) => [e.type, e.data, e.at])).toEqual([
      ['job', { status: 'planning' }, iso(START + 1000)],
      ['job', { status: 'queued', tasks: 3 }, iso(START + 1000)],
    ]);
  });

  it('queued → running: the task and, on its first task, the job; times from the clock', async () => {
    const t = await setup();
    const job = t.addJob('queued');
    const first = t.addTask(job.id, 'queued', 0);
    const second = t.addTask(job.id, 'queued', 1);
    t.clock.advance(5000);
    const started = t.states.startTask(job, first);
    expect(started).toMatchObject({ status: 'running', attempt: 1, started_at: iso(START + 5000) });
    expect(t.task(first.id)).toMatchObject({ status: 'running', attempt: 1, started_at: iso(START + 5000) });
    expect(t.job(job.id)).toMatchObject({ status: 'running', started_at: iso(START + 5000) });
    expect(job.status).toBe('running'); // the caller's row follows
    t.clock.advance(1000);
    t.states.startTask(job, second); // the job runs already: only the task moves
    expect(t.job(job.id).started_at).toBe(iso(START + 5000));
    expect(t.task(second.id).started_at).toBe(iso(START + 6000));
    expect(t.heard.map((e) => [e.type, (e.data as { status: string }).status, e.at])).toEqual([
      ['job', 'running', iso(START + 5000)],
      ['task', 'running', iso(START + 5000)],
      ['task', 'running', iso(START + 6000)],
    ]);
  });

  for (const status of ['succeeded', 'failed', 'cancelled'] as const)
    it(`running → ${status}: finished_at from the clock, one task event, a system line in the log`, async () => {
      const t = await setup();
      const job = t.addJob('running');
      const task = t.addTask(job.id, 'running');
      t.clock.advance(7000);
      expect(t.states.finishTask(task, { status, error: status === 'succeeded' ? undefined : 'why', exitCode: 3, result: { ok: 1 } })).toBe(true);
      expect(t.task(task.id)).toMatchObject({ status, finished_at: iso(START + 7000), exit_code: 3, result: '{"ok":1}' });
      expect(t.heard).toHaveLength(1);
      expect(t.heard[0]).toMatchObject({ type: 'task', task_id: task.id, at: iso(START + 7000), data: { status, exit_code: 3 } });
      await t.states.logs.flushed(task.id);
      expect(fs.readFileSync(t.where.taskLog(task.id), 'utf8')).toContain(status);
    });

  it('running → queued: a shutdown stops a task (no attempt counted), a restart requeues or fails one', async () => {
    const t = await setup();
    const job = t.addJob('running');
    const stopped = t.addTask(job.id, 'running', 0);
    t.states.requeueStopped(stopped);
    expect(t.task(stopped.id)).toMatchObject({ status: 'queued', attempt: 0, started_at: null });

    const interrupted = t.addTask(job.id, 'running', 1);
    expect(t.states.recoverInterrupted(interrupted, 2)).toBe('queued');
    expect(t.task(interrupted.id)).toMatchObject({ status: 'queued', output_tail: '' });

    const exhausted = t.addTask(job.id, 'running', 2);
    t.db.prepare('UPDATE tasks SET attempt = 2 WHERE id = ?').run(exhausted.id);
    t.clock.advance(9000);
    expect(t.states.recoverInterrupted(t.task(exhausted.id), 2)).toBe('failed');
    expect(t.task(exhausted.id)).toMatchObject({ status: 'failed', finished_at: iso(START + 9000) });
    expect(t.heard.map((e) => [e.task_id, (e.data as { status: string }).status, e.at])).toEqual([
      [interrupted.id, 'queued', iso(START)],
      [exhausted.id, 'failed', iso(START + 9000)],
    ]);
  });

  it('queued → cancelled: a cancel marks the job; its queued tasks only are cancelled, a slice at a time', async () => {
    const t = await setup();
    const job = t.addJob('running');
    const queued = [0, 2, 3].map((index) => t.addTask(job.id, 'queued', index));
    const running = t.addTask(job.id, 'running', 1);
    t.clock.advance(3000);
    t.states.requestCancel(job.id);
    expect(t.job(job.id)).toMatchObject({ status: 'running', cancel_requested: 1 });
    expect(t.task(queued[0]!.id).status, 'the mark alone cancels no task').toBe('queued');
    expect(t.states.cancelQueuedTasks(job.id, 'cancelled', 2)).toBe(2);
    expect(t.states.cancelQueuedTasks(job.id, 'cancelled', 2)).toBe(1);
    for (const task of queued) expect(t.task(task.id)).toMatchObject({ status: 'cancelled', error: 'cancelled', finished_at: iso(START + 3000) });
    expect(t.task(running.id).status).toBe('running');
    // A job with no queued task left: the set update changes nothing, which is fine.
    expect(t.states.cancelQueuedTasks(job.id, 'cancelled')).toBe(0);
    expect(() => t.states.requestCancel(job.id)).not.toThrow();
  });

  for (const from of ['queued', 'running'] as const)
    for (const status of FINAL_JOB_STATUSES)
      it(`job ${from} → ${status}: finished_at from the clock, its last event, then the listeners`, async () => {
        const t = await setup();
        const job = t.addJob(from);
        t.clock.advance(11_000);
        expect(t.states.finishJob(job.id, status, status === 'completed' ? null : 'why')).toBe(true);
        expect(t.job(job.id)).toMatchObject({ status, finished_at: iso(START + 11_000) });
        expect(t.heard.map((e) => [e.type, (e.data as { status: string }).status, e.at])).toEqual([['job', status, iso(START + 11_000)]]);
        expect(t.finished.map((j) => j.status)).toEqual([status]);
      });

  it('failJob: the queued tasks cancelled with the reason, the job failed, in one transaction', async () => {
    const t = await setup();
    const job = t.addJob('queued');
    const task = t.addTask(job.id, 'queued');
    t.states.failJob(job.id, 'dependency job_x ended failed');
    expect(t.task(task.id)).toMatchObject({ status: 'cancelled', error: 'dependency job_x ended failed', finished_at: iso(START) });
    expect(t.job(job.id)).toMatchObject({ status: 'failed', error: 'dependency job_x ended failed' });
    expect(t.heard.at(-1)?.data).toMatchObject({ status: 'failed', counts: { cancelled: 1, total: 1 } });
  });

  it('an artifact row and its event, stamped by the clock; captured again, the same id with its new size', async () => {
    const t = await setup();
    const job = t.addJob('running');
    const task = t.addTask(job.id, 'running');
    const a = { path: 'a.txt', absolute: '/x/a.txt', size: 1, firstSeen: 0, lastCaptured: 0, mtimeNs: 0n, uploadKey: 7 };
    const b = { path: 'b.txt', absolute: '/x/b.txt', size: 2, firstSeen: 1, lastCaptured: 1, mtimeNs: 0n, uploadKey: 5 };
    t.clock.advance(2000);
    t.states.recordArtifact(job.id, task.id, a, 'sha-a');
    t.states.recordArtifact(job.id, task.id, b, 'sha-b');
    t.clock.advance(1000);
    t.states.recordArtifact(job.id, task.id, { ...a, size: 3, uploadKey: 9 }, 'sha-a2');
    const rows = t.db.prepare('SELECT name, size, sha256, ord, created_at FROM artifacts ORDER BY ord').all();
    expect(rows).toEqual([
      { name: 'b.txt', size: 2, sha256: 'sha-b', ord: 5, created_at: iso(START + 2000) },
      { name: 'a.txt', size: 3, sha256: 'sha-a2', ord: 9, created_at: iso(START + 3000) },
    ]);
    expect(t.heard.map((e) => [e.type, (e.data as { name: string }).name, e.at])).toEqual([
      ['artifact', 'a.txt', iso(START + 2000)],
      ['artifact', 'b.txt', iso(START + 2000)],
      ['artifact', 'a.txt', iso(START + 3000)],
    ]);
    expect(new Set(t.heard.filter((e) => (e.data as { name: string }).name === 'a.txt').map((e) => (e.data as { id: string }).id)).size).toBe(1);
  });

  it('a task output and a callback outcome are written to their rows', async () => {
    const t = await setup();
    const job = t.addJob('completed');
    const task = t.addTask(job.id, 'running');
    t.states.recordOutput(task.id, 'tail', { step: 2 });
    t.states.recordOutput(task.id, 'tail 2', undefined); // no new progress: the last one stays
    expect(t.task(task.id)).toMatchObject({ output_tail: 'tail 2', latest_progress: '{"step":2}' });
    t.states.recordCallback(job.id, 'delivered');
    expect(t.job(job.id).callback_state).toBe('delivered');
  });
});

describe('a transition the table does not allow is an internal error, and writes nothing', () => {
  /** Every status → every target a method can ask for, except the allowed ones and the declared races. */
  const taskAttempts: Array<{ to: TaskStatus; act: (states: JobStates, job: JobRow, task: TaskRow) => unknown }> = [
    { to: 'running', act: (states, job, task) => states.startTask({ ...job, status: 'running' }, task) },
    { to: 'succeeded', act: (states, _job, task) => states.finishTask(task, { status: 'succeeded' }) },
    { to: 'failed', act: (states, _job, task) => states.finishTask(task, { status: 'failed', error: 'x' }) },
    { to: 'cancelled', act: (states, _job, task) => states.finishTask(task, { status: 'cancelled', error: 'cancelled' }) },
    { to: 'queued', act: (states, _job, task) => states.requeueStopped(task) },
  ];
  for (const from of TASK_STATUSES)
    for (const { to, act } of taskAttempts) {
      if (TASK_TRANSITIONS[from].includes(to)) continue;
      if (TASK_SETTLED_RACES.some((race) => race.found === from && race.wanted.includes(to))) continue;
      it(`task ${from} → ${to}`, async () => {
        const t = await setup();
        const job = t.addJob('running');
        const task = t.addTask(job.id, from);
        t.clock.advance(1000);
        expect(() => act(t.states, job, task)).toThrow(
          new InternalError(
            `task ${task.id} cannot go from ${from} to ${to} (from ${from} it may go to: ${TASK_TRANSITIONS[from].join(', ') || 'nothing, it is final'})`,
          ),
        );
        expect(t.task(task.id)).toEqual(task);
        expect(t.stored()).toEqual([]);
      });
    }

  const jobAttempts: Array<{ to: JobStatus; act: (states: JobStates, job: JobRow, task: TaskRow) => unknown }> = [
    { to: 'queued', act: (states, job) => states.queueSubmitted([{ id: job.id, project: 'p', tasks: 1 }]) },
    { to: 'running', act: (states, job, task) => states.startTask({ ...job, status: 'queued' }, task) },
    ...FINAL_JOB_STATUSES.map((status) => ({ to: status, act: (states: JobStates, job: JobRow) => states.finishJob(job.id, status, null) })),
  ];
  for (const from of JOB_STATUSES)
    for (const { to, act } of jobAttempts) {
      if (JOB_TRANSITIONS[from].includes(to)) continue;
      if (JOB_SETTLED_RACES.some((race) => race.found === from && race.wanted.includes(to))) continue;
      it(`job ${from} → ${to}`, async () => {
        const t = await setup();
        const job = t.addJob(from);
        const task = t.addTask(job.id, 'queued');
        expect(() => act(t.states, job, task)).toThrow(InternalError);
        expect(() => act(t.states, job, task)).toThrow(`job ${job.id} cannot go from ${from} to ${to}`);
        // All or nothing: startTask's task change is rolled back with the job's.
        expect(t.job(job.id)).toEqual(job);
        expect(t.task(task.id)).toEqual(task);
        expect(t.stored()).toEqual([]);
        expect(t.finished).toEqual([]);
      });
    }
});

describe('an update that changes no row is an internal error', () => {
  it('a status change of a task or job that is not there', async () => {
    const t = await setup();
    const job = t.addJob('running');
    const ghost = { ...t.addTask(job.id, 'running'), id: 'task_ghost' };
    expect(() => t.states.finishTask(ghost, { status: 'succeeded' })).toThrow(new InternalError('task task_ghost → succeeded: there is no such task'));
    expect(() => t.states.finishJob('job_ghost', 'completed', null)).toThrow(new InternalError('job job_ghost → completed: there is no such job'));
    expect(() => t.states.queueSubmitted([{ id: 'job_ghost', project: 'p', tasks: 1 }])).toThrow(InternalError);
    expect(t.stored()).toEqual([]);
  });

  it('a cancel, an output or a callback outcome for a row that is not there', async () => {
    const t = await setup();
    expect(() => t.states.requestCancel('job_ghost')).toThrow(new InternalError('job job_ghost: no row to mark cancel_requested (0 rows changed)'));
    expect(() => t.states.recordOutput('task_ghost', 'tail', undefined)).toThrow(InternalError);
    expect(() => t.states.recordCallback('job_ghost', 'failed')).toThrow(InternalError);
  });
});

describe('declared races are no-ops, not errors', () => {
  for (const outcome of ['succeeded', 'failed', 'cancelled'] as const)
    it(`a task a cancel already settled stays cancelled when its container ends ${outcome}`, async () => {
      const t = await setup();
      const job = t.addJob('running');
      const running = t.addTask(job.id, 'running');
      t.db.prepare("UPDATE tasks SET status = 'cancelled', error = 'cancelled', finished_at = 'then' WHERE id = ?").run(running.id);
      const settled = t.task(running.id);
      t.clock.advance(1000);
      expect(t.states.finishTask(running, { status: outcome, error: 'late' })).toBe(false);
      expect(t.task(running.id)).toEqual(settled);
      expect(t.stored()).toEqual([]);
      await t.states.logs.flushed(running.id);
      expect(fs.existsSync(t.where.taskLog(running.id))).toBe(false); // no system line either
    });

  it('a task a cancel already settled is not requeued by a shutdown', async () => {
    const t = await setup();
    const job = t.addJob('running');
    const running = t.addTask(job.id, 'running');
    t.db.prepare("UPDATE tasks SET status = 'cancelled' WHERE id = ?").run(running.id);
    const settled = t.task(running.id);
    t.states.requeueStopped(running);
    expect(t.task(running.id)).toEqual(settled);
  });

  for (const status of ['completed', 'partial', 'failed'] as const)
    it(`a job a cancel already ended stays cancelled when it would end ${status}`, async () => {
      const t = await setup();
      const job = t.addJob('cancelled');
      expect(t.states.finishJob(job.id, status, 'late')).toBe(false);
      expect(t.job(job.id)).toEqual(job);
      expect(t.stored()).toEqual([]);
      expect(t.finished).toEqual([]); // no second bill, no second callback
    });
});

describe('insertTasks (issue 22: rows in groups per statement)', () => {
  it('writes every task of a chunk that is not a whole number of groups: its index, part, items and command, each with its own id', async () => {
    const t = await setup();
    const job = t.addJob('planning');
    const planned = Array.from({ length: 123 }, (_, i) => ({
      kind: 'task' as const,
      part: { merge: { n: i } },
      items: 1,
      ...(i === 122 ? { command: ['python', 'x.py'] } : {}),
    }));
    t.states.insertTasks(job.id, 7, planned);
    const rows = t.db.prepare('SELECT * FROM tasks WHERE job_id = ? ORDER BY idx').all(job.id) as TaskRow[];
    expect(rows.map((r) => r.idx)).toEqual(Array.from({ length: 123 }, (_, i) => 7 + i));
    expect(rows.map((r) => JSON.parse(r.payload).merge.n)).toEqual(Array.from({ length: 123 }, (_, i) => i));
    expect(rows.every((r) => r.status === 'queued' && r.kind === 'task' && r.items === 1)).toBe(true);
    expect(rows.filter((r) => r.command !== null).map((r) => [r.idx, JSON.parse(r.command!)])).toEqual([[129, ['python', 'x.py']]]);
    expect(new Set(rows.map((r) => r.id)).size).toBe(123);
    expect(rows.every((r) => /^task_[0-9a-v]{9}[0-9a-hjkmnp-tv-z]{8}$/.test(r.id))).toBe(true);
  });
});

describe('counts (issue 22: a job total kept, its largest status derived)', () => {
  it('match a full count after every kind of change: start, finish, requeue, a cancel of the queued tasks, more tasks inserted', async () => {
    const t = await setup();
    const job = t.addJob('queued');
    const planned = (n: number) => Array.from({ length: n }, (_, i) => ({ kind: 'task' as const, part: { merge: { n: i } }, items: 1 }));
    t.states.insertTasks(job.id, 0, planned(60));
    const check = (): void => expect(t.states.counts(job.id)).toEqual(taskCounts(t.db, job.id));
    check();
    const rows = () => t.db.prepare('SELECT * FROM tasks WHERE job_id = ? ORDER BY idx').all(job.id) as TaskRow[];
    // Most tasks run and succeed: the largest status moves from queued to succeeded.
    for (const task of rows().slice(0, 40)) {
      const started = t.states.startTask(t.job(job.id), task);
      check();
      t.states.finishTask(started, { status: task.idx % 7 === 0 ? 'failed' : 'succeeded' });
      check();
    }
    const [a, b] = rows().slice(40, 42);
    t.states.requeueLost(t.states.startTask(t.job(job.id), a!), 'lost', 2);
    check();
    t.states.startTask(t.job(job.id), b!);
    check();
    // A count taken while more tasks are written does not stick.
    t.states.insertTasks(job.id, 60, planned(5));
    check();
    t.states.requestCancel(job.id);
    check();
    expect(t.states.counts(job.id)).toMatchObject({ total: 65, running: 1 });
  });

  it('kept as tasks move, without reading the tasks again, and read again after a cancel, a settled race or a rolled-back transaction', async () => {
    const t = await setup();
    const job = t.addJob('queued');
    t.states.insertTasks(
      job.id,
      0,
      Array.from({ length: 12 }, (_, i) => ({ kind: 'task' as const, part: { merge: { n: i } }, items: 1 })),
    );
    const rows = () => t.db.prepare('SELECT * FROM tasks WHERE job_id = ? ORDER BY idx').all(job.id) as TaskRow[];
    const check = (): void => expect(t.states.counts(job.id)).toEqual(taskCounts(t.db, job.id));
    check();
    // Kept: a start and a finish read no count (the count statement is not run).
    const counted = vi.spyOn(t.db, 'prepare');
    const started = rows()
      .slice(0, 4)
      .map((task) => t.states.startTask(t.job(job.id), task));
    t.states.finishTask(started[0]!, { status: 'succeeded' });
    t.states.finishTask(started[1]!, { status: 'failed', error: 'x' });
    expect(counted.mock.calls.filter(([sql]) => /COUNT\(/.test(sql))).toEqual([]);
    counted.mockRestore();
    check();
    // A cancel of a running task (cancelled is reached from queued or running): read again.
    t.states.finishTask(started[2]!, { status: 'cancelled', error: 'cancelled' });
    check();
    // A settled race (the cancel stands): nothing moved, nothing counted twice.
    expect(t.states.finishTask(started[2]!, { status: 'succeeded' })).toBe(false);
    check();
    // A restart's requeue and a lost worker's.
    t.states.recoverInterrupted(t.task(started[3]!.id), 2);
    check();
    t.states.requeueLost(t.states.startTask(t.job(job.id), rows()[5]!), 'lost', 2);
    check();
    // A start inside a transaction that rolls back: the kept counts must not keep it.
    expect(() =>
      t.events.transaction(() => {
        t.states.startTask(t.job(job.id), rows()[6]!);
        expect(t.states.counts(job.id).running).toBe(1);
        throw new Error('rolled back');
      }),
    ).toThrow('rolled back');
    expect(t.task(rows()[6]!.id).status).toBe('queued');
    check();
    // A cancel of the queued tasks (a set update).
    t.states.requestCancel(job.id);
    check();
  });
});
