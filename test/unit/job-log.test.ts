import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/server/db.js';
import { jobLog } from '../../src/server/jobs/job-log.js';

/*
 * The web page's "all tasks" log (GET /api/v1/jobs/:id/log): every task's lines interleaved in
 * the order the server heard them, each with its task, the newest `lines` of them, read from the
 * job's events (a line split over two reports joined again).
 */
describe('jobLog', () => {
  const db = openDatabase(':memory:');
  const insert = db.prepare("INSERT INTO events (job_id, task_id, type, data, at) VALUES (?, ?, ?, ?, '2026-01-01T00:00:00.000Z')");
  const output = (job: string, index: number, text: string) => insert.run(job, `task_${index}`, 'output', JSON.stringify({ index, text }));
  const task = (job: string, index: number, data: Record<string, unknown>) => insert.run(job, `task_${index}`, 'task', JSON.stringify({ index, ...data }));
  const progress = (job: string, index: number) => insert.run(job, `task_${index}`, 'progress', JSON.stringify({ index, progress: { step: 1 } }));

  task('job_a', 0, { status: 'running', attempt: 1 });
  task('job_a', 1, { status: 'running', attempt: 1 });
  output('job_a', 0, 'zero one\nzero tw');
  progress('job_a', 0);
  output('job_a', 1, 'one one\n');
  output('job_a', 0, 'o\n[cycle] a line the system wrote\n');
  output('job_other', 0, 'not this job\n');
  task('job_a', 1, { status: 'failed', error: 'exit 3\nmore' });
  output('job_a', 0, 'no newline at the end');

  it('interleaves the tasks as heard, each line with its task, system lines told apart', () => {
    const log = jobLog(db, 'job_a', 100);
    expect(log.lines).toEqual([
      { index: 0, source: 'system', text: 'task 0 started (attempt 1)' },
      { index: 1, source: 'system', text: 'task 1 started (attempt 1)' },
      { index: 0, source: 'output', text: 'zero one' },
      { index: 1, source: 'output', text: 'one one' },
      { index: 0, source: 'output', text: 'zero two' },
      { index: 0, source: 'system', text: 'a line the system wrote' },
      { index: 1, source: 'system', text: 'task 1 failed: exit 3' },
      { index: 0, source: 'output', text: 'no newline at the end' },
    ]);
    expect(log.complete).toBe(true);
    expect(Number(log.last_event_id)).toBeGreaterThan(0);
  });

  it('keeps the newest lines only, and says older ones were left out', () => {
    const log = jobLog(db, 'job_a', 3);
    expect(log.lines.map((l) => l.text)).toEqual(['a line the system wrote', 'task 1 failed: exit 3', 'no newline at the end']);
    expect(log.complete).toBe(false);
  });

  it('keeps the newest 2,000 lines of a long log, interleaved', () => {
    for (let i = 0; i < 5000; i++) output('job_long', i % 7, `line ${i}\n`);
    const log = jobLog(db, 'job_long', 2000);
    expect(log.lines).toHaveLength(2000);
    expect(log.lines.at(-1)).toEqual({ index: 4999 % 7, source: 'output', text: 'line 4999' });
    expect(log.lines[0]!.text).toBe('line 3000');
    expect(log.complete).toBe(false);
  });
});
