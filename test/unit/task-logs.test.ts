import fs, { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openDatabase, type DB } from '../../src/server/db.js';
import { EventLog } from '../../src/server/events.js';
import { layout as dataLayout } from '../../src/server/layout.js';
import { JobDocuments } from '../../src/server/jobs/documents.js';
import { WHOLE_JOB } from '../../src/server/jobs/paging.js';
import { JobStates } from '../../src/server/state.js';
import { FileOpener, TaskLogs } from '../../src/server/task-logs.js';
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

describe('task log files (issue 20: opened once per task, not per line, and never on the event loop)', () => {
  it('appends in order to a file kept open; a task ended is closed; a later line opens it again', async () => {
    const dir = await tempDir('cycle-task-logs-');
    const where = dataLayout(dir);
    const logs = new TaskLogs(where);
    logs.append('task_a', 'one\n');
    logs.append('task_a', 'two\n');
    expect(logs.isOpen('task_a')).toBe(true);
    await logs.flushed('task_a');
    expect(openUnder(`${dir}/logs`)).toBe(1);
    expect(readFileSync(where.taskLog('task_a'), 'utf8')).toBe('one\ntwo\n');
    // Once open, a line is written through: in the file when append returns.
    logs.append('task_a', 'three\n');
    expect(readFileSync(where.taskLog('task_a'), 'utf8')).toBe('one\ntwo\nthree\n');
    logs.close('task_a');
    expect(logs.isOpen('task_a')).toBe(false);
    expect(openUnder(`${dir}/logs`)).toBe(0);
    logs.append('task_a', 'four ✓\n');
    await logs.flushed('task_a');
    expect(readFileSync(where.taskLog('task_a'), 'utf8')).toBe('one\ntwo\nthree\nfour ✓\n');
    await logs.closeAll();
    expect(logs.openCount).toBe(0);
    expect(openUnder(`${dir}/logs`)).toBe(0);
  });

  it('never opens (or makes) a file synchronously: a file system busy with other writes cannot stall the event loop', async () => {
    const dir = await tempDir('cycle-task-logs-');
    const where = dataLayout(dir);
    const logs = new TaskLogs(where);
    const openSync = vi.spyOn(fs, 'openSync');
    const mkdirSync = vi.spyOn(fs, 'mkdirSync');
    try {
      logs.append('task_a', 'started\n');
      logs.append('task_b', 'started\n');
      logs.close('task_a');
      await logs.closeAll();
      expect(openSync).not.toHaveBeenCalled();
      expect(mkdirSync).not.toHaveBeenCalled();
    } finally {
      openSync.mockRestore();
      mkdirSync.mockRestore();
    }
    expect(readFileSync(where.taskLog('task_a'), 'utf8')).toBe('started\n');
  });

  it('lines appended while the file opens keep their order and are all written, through a close and a reopen', async () => {
    const dir = await tempDir('cycle-task-logs-');
    const where = dataLayout(dir);
    const logs = new TaskLogs(where);
    const lines = Array.from({ length: 50 }, (_, i) => `line ${i}\n`);
    for (const line of lines.slice(0, 10)) logs.append('t', line);
    // Closed before its open finished: the file is closed once the lines are written, none lost.
    logs.close('t');
    expect(logs.isOpen('t')).toBe(false);
    // A line after the close, while that open is still in flight: it goes after the others.
    for (const line of lines.slice(10, 20)) logs.append('t', line);
    expect(logs.isOpen('t')).toBe(true);
    await logs.flushed('t');
    for (const line of lines.slice(20, 30)) logs.append('t', line);
    logs.close('t');
    for (const line of lines.slice(30)) logs.append('t', line);
    logs.close('t');
    await logs.flushed('t');
    expect(readFileSync(where.taskLog('t'), 'utf8')).toBe(lines.join(''));
    expect(openUnder(`${dir}/logs`)).toBe(0);
    expect(logs.openCount).toBe(0);
  });

  it('closeAll (the server stops) writes the lines still waiting for an open, then closes every file', async () => {
    const dir = await tempDir('cycle-task-logs-');
    const where = dataLayout(dir);
    const logs = new TaskLogs(where);
    for (let i = 0; i < 20; i++) logs.append(`t${i}`, `t${i} last words\n`);
    await logs.closeAll();
    for (let i = 0; i < 20; i++) expect(readFileSync(where.taskLog(`t${i}`), 'utf8')).toBe(`t${i} last words\n`);
    expect(openUnder(`${dir}/logs`)).toBe(0);
    expect(logs.openCount).toBe(0);
  });

  it('at most maxOpen files are open: the least recently written is closed first, and loses no line', async () => {
    const dir = await tempDir('cycle-task-logs-');
    const where = dataLayout(dir);
    const logs = new TaskLogs(where, 3);
    for (const task of ['t1', 't2', 't3']) logs.append(task, `${task} a\n`);
    await Promise.all(['t1', 't2', 't3'].map((t) => logs.flushed(t)));
    logs.append('t1', 't1 b\n'); // t1 is now the most recently written
    logs.append('t4', 't4 a\n'); // closes t2, the least recently written
    await logs.flushed('t4');
    expect(logs.openCount).toBe(3);
    expect(['t1', 't2', 't3', 't4'].map((t) => logs.isOpen(t))).toEqual([true, false, true, true]);
    expect(openUnder(`${dir}/logs`)).toBe(3);
    // Many at once, while their opens are in flight: still bounded once they settle, nothing lost.
    for (let i = 0; i < 20; i++) logs.append(`more-${i}`, `more ${i}\n`);
    await Promise.all(Array.from({ length: 20 }, (_, i) => logs.flushed(`more-${i}`)));
    expect(logs.openCount).toBeLessThanOrEqual(3);
    expect(openUnder(`${dir}/logs`)).toBeLessThanOrEqual(3);
    for (let i = 0; i < 20; i++) expect(readFileSync(where.taskLog(`more-${i}`), 'utf8')).toBe(`more ${i}\n`);
    logs.append('t2', 't2 b\n');
    await logs.flushed('t2');
    expect(readFileSync(where.taskLog('t2'), 'utf8')).toBe('t2 a\nt2 b\n');
    expect(readFileSync(where.taskLog('t1'), 'utf8')).toBe('t1 a\nt1 b\n');
    await logs.closeAll();
    expect(openUnder(`${dir}/logs`)).toBe(0);
  });

  it('a data folder gone under an open file loses the line, never throws', async () => {
    const dir = await tempDir('cycle-task-logs-');
    const logs = new TaskLogs(dataLayout(dir));
    logs.append('t', 'a\n');
    await logs.flushed('t');
    await fs.promises.rm(dir, { recursive: true, force: true });
    expect(() => logs.append('t', 'b\n')).not.toThrow();
    expect(() => logs.append('other', 'c\n')).not.toThrow();
    await logs.closeAll();
  });

  it('JobStates: a running task keeps its log open; finishing or requeueing it closes the file; the output route sees every line at once', async () => {
    const dir = await tempDir('cycle-task-logs-');
    const where = dataLayout(dir);
    await fs.promises.mkdir(dir, { recursive: true });
    const db = openDatabase(where.db);
    opened.push(db);
    const states = new JobStates({ db, events: new EventLog(db), layout: where, clock: manualClock() });
    const documents = new JobDocuments({ db, states, layout: where });
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
    states.logs.append('task_2', 'hello from task 2\n');
    // Read at once (the files' opens still in flight): every line appended so far is there.
    const output = await documents.output(job(), 10_000, WHOLE_JOB);
    expect(output.tasks.map((t) => t.output)).toEqual([
      expect.stringMatching(/started \(attempt 1\)\n$/),
      expect.stringMatching(/started \(attempt 1\)\nhello from task 2\n$/),
    ]);
    expect(states.logs.isOpen('task_1')).toBe(true);
    expect(states.logs.isOpen('task_2')).toBe(true);
    states.finishTask(first, { status: 'succeeded', result: { ok: 1 } });
    expect(states.logs.isOpen('task_1')).toBe(false);
    states.requeueLost(second, 'machine m stopped renewing its lease (30s)', 2);
    expect(states.logs.isOpen('task_2')).toBe(false);
    await Promise.all([states.logs.flushed('task_1'), states.logs.flushed('task_2')]);
    expect(openUnder(`${dir}/logs`)).toBe(0);
    expect(readFileSync(where.taskLog('task_1'), 'utf8')).toMatch(/started \(attempt 1\)[\s\S]*succeeded/);
    expect(readFileSync(where.taskLog('task_2'), 'utf8')).toMatch(/hello from task 2\n[\s\S]*stopped renewing/);
  });
});

describe('the log file opener (a thread of its own, a batch at a time)', () => {
  it('opens the files asked for at once, each for appending, making the logs folder', async () => {
    const dir = await tempDir('cycle-task-logs-');
    const files = Array.from({ length: 30 }, (_, i) => `${dir}/logs/t${i}.log`);
    const opener = new FileOpener();
    const fds = await Promise.all(files.map((file) => opener.open(file)));
    expect(new Set(fds).size).toBe(30);
    for (const fd of fds) fs.writeSync(fd, 'x\n');
    for (const fd of fds) fs.closeSync(fd);
    for (const file of files) expect(readFileSync(file, 'utf8')).toBe('x\n');
    await expect(opener.open(`${dir}/logs/t0.log`).then((fd) => fs.closeSync(fd))).resolves.toBeUndefined();
  });

  it('a file that cannot be opened is refused with its error; a thread that cannot run leaves the opens to the thread pool', async () => {
    const dir = await tempDir('cycle-task-logs-');
    await fs.promises.writeFile(`${dir}/not-a-folder`, '');
    const opener = new FileOpener();
    await expect(opener.open(`${dir}/not-a-folder/t.log`)).rejects.toMatchObject({ code: 'ENOTDIR' });
    const broken = new FileOpener("throw new Error('no thread here')");
    const fd = await broken.open(`${dir}/logs/t.log`);
    fs.writeSync(fd, 'still opened\n');
    fs.closeSync(fd);
    expect(readFileSync(`${dir}/logs/t.log`, 'utf8')).toBe('still opened\n');
    const later = await broken.open(`${dir}/logs/u.log`);
    fs.closeSync(later);
  });
});
