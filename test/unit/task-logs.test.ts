import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import fs from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type DB } from '../../src/server/db.js';
import { EventLog } from '../../src/server/events.js';
import { layout as dataLayout } from '../../src/server/layout.js';
import { JobStates } from '../../src/server/state.js';
import { TaskLogs } from '../../src/server/task-logs.js';
import { manualClock, tempDir } from '../helpers/context.js';

/** File descriptors this process holds open on files under `dir`. */
function openUnder(dir: string): number {
  let count = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if ((readlinkOf(`/proc/self/fd/${fd}`) ?? '').startsWith(dir)) count++;
    } catch {
      // closed meanwhile
    }
  }
  return count;
}

function readlinkOf(file: string): string | undefined {
  try {
    return readlinkSync(file);
  } catch {
    return undefined;
  }
}

const opened: DB[] = [];
afterEach(() => {
  for (const db of opened.splice(0)) db.close();
});

describe('task log files (issue 20: opened once per task, not per line)', () => {
  it('appends in order to a file kept open; a task ended is closed; a later line opens it again', async () => {
    const dir = await tempDir('cycle-task-logs-');
    const where = dataLayout(dir);
    const logs = new TaskLogs(where);
    logs.append('task_a', 'one\n');
    logs.append('task_a', 'two\n');
    expect(logs.isOpen('task_a')).toBe(true);
    expect(openUnder(`${dir}/logs`)).toBe(1);
    expect(readFileSync(where.taskLog('task_a'), 'utf8')).toBe('one\ntwo\n'); // written through, not buffered
    logs.close('task_a');
    expect(logs.isOpen('task_a')).toBe(false);
    expect(openUnder(`${dir}/logs`)).toBe(0);
    logs.append('task_a', 'three ✓\n');
    expect(readFileSync(where.taskLog('task_a'), 'utf8')).toBe('one\ntwo\nthree ✓\n');
    logs.closeAll();
    expect(logs.openCount).toBe(0);
    expect(openUnder(`${dir}/logs`)).toBe(0);
  });

  it('at most maxOpen files are open: the least recently written is closed first, and loses no line', async () => {
    const dir = await tempDir('cycle-task-logs-');
    const where = dataLayout(dir);
    const logs = new TaskLogs(where, 3);
    for (const task of ['t1', 't2', 't3']) logs.append(task, `${task} a\n`);
    logs.append('t1', 't1 b\n'); // t1 is now the most recently written
    logs.append('t4', 't4 a\n'); // closes t2, the least recently written
    expect(logs.openCount).toBe(3);
    expect(['t1', 't2', 't3', 't4'].map((t) => logs.isOpen(t))).toEqual([true, false, true, true]);
    expect(openUnder(`${dir}/logs`)).toBe(3);
    for (let i = 0; i < 20; i++) logs.append(`more-${i}`, 'x\n');
    expect(logs.openCount).toBe(3);
    expect(openUnder(`${dir}/logs`)).toBe(3);
    logs.append('t2', 't2 b\n');
    expect(readFileSync(where.taskLog('t2'), 'utf8')).toBe('t2 a\nt2 b\n');
    expect(readFileSync(where.taskLog('t1'), 'utf8')).toBe('t1 a\nt1 b\n');
    logs.closeAll();
  });

  it('a data folder gone under an open file loses the line, never throws', async () => {
    const dir = await tempDir('cycle-task-logs-');
    const logs = new TaskLogs(dataLayout(dir));
    logs.append('t', 'a\n');
    await fs.rm(dir, { recursive: true, force: true });
    expect(() => logs.append('t', 'b\n')).not.toThrow();
    expect(() => logs.append('other', 'c\n')).not.toThrow();
    logs.closeAll();
  });

  it('JobStates: a running task keeps its log open; finishing or requeueing it closes the file', async () => {
    const dir = await tempDir('cycle-task-logs-');
    const where = dataLayout(dir);
    await fs.mkdir(dir, { recursive: true });
    const db = openDatabase(where.db);
    opened.push(db);
    const states = new JobStates({ db, events: new EventLog(db), layout: where, clock: manualClock() });
    db.prepare(
      "INSERT INTO jobs (id, seq, project, type, status, request, created_at) VALUES ('job_1', 1, 'p', 'structured_runner', 'queued', '{}', '2026-01-01T00:00:00.000Z')",
    ).run();
    const insert = db.prepare("INSERT INTO tasks (id, job_id, idx, kind, status, payload) VALUES (?, 'job_1', ?, 'task', 'queued', '{}')");
    insert.run('task_1', 0);
    insert.run('task_2', 1);
    const row = (id: string) => db.prepare('SELECT * FROM tasks WHERE id = ?').get(id) as Parameters<JobStates['startTask']>[1];
    const job = () => db.prepare("SELECT * FROM jobs WHERE id = 'job_1'").get() as Parameters<JobStates['startTask']>[0];
    const first = states.startTask(job(), row('task_1'));
    const second = states.startTask(job(), row('task_2'));
    expect(states.logs.isOpen('task_1')).toBe(true);
    expect(states.logs.isOpen('task_2')).toBe(true);
    states.finishTask(first, { status: 'succeeded', result: { ok: 1 } });
    expect(states.logs.isOpen('task_1')).toBe(false);
    states.requeueLost(second, 'machine m stopped renewing its lease (30s)', 2);
    expect(states.logs.isOpen('task_2')).toBe(false);
    expect(openUnder(`${dir}/logs`)).toBe(0);
    expect(readFileSync(where.taskLog('task_1'), 'utf8')).toMatch(/started \(attempt 1\)[\s\S]*succeeded/);
    expect(readFileSync(where.taskLog('task_2'), 'utf8')).toMatch(/stopped renewing/);
  });
});
