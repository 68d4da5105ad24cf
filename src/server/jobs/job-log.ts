import { describeTaskEvent, logLine, taskEventDataOf, type TaskEventData } from '../../api/log-lines.js';
import { type DB, parseJson } from '../db.js';

/*
 * `GET /api/v1/jobs/:id/log`: the newest lines of every task of a job, interleaved in the order
 * the server heard them, each with its task's index (the web page's "all tasks" log). Read from
 * the job's `output` events (each a worker's report: the text a task printed since the one
 * before) and `task` events (the system lines: started, succeeded, failed, requeued), newest
 * first until enough lines, so a job of 10,000 tasks is never read whole.
 */

export const JOB_LOG_DEFAULT_LINES = 2000;
export const JOB_LOG_MAX_LINES = 10_000;
/** Read no further back than this much text, or this many events, whatever `lines` asks. */
const JOB_LOG_MAX_BYTES = 4 * 1024 * 1024;
const JOB_LOG_MAX_EVENTS = 100_000;

export interface JobLogLine {
  /** The task's index. */
  index: number;
  source: 'output' | 'system';
  text: string;
}

export interface JobLog {
  job_id: string;
  lines: JobLogLine[];
  /** Whether the lines start at the job's first; false when older lines were left out. */
  complete: boolean;
  /** The job's newest event when read: a stream opened from it tells of every line after these. */
  last_event_id: string;
}

export function jobLog(db: DB, jobId: string, maxLines: number): JobLog {
  const lastEventId = (db.prepare('SELECT MAX(seq) AS seq FROM events WHERE job_id = ?').get(jobId) as { seq: number | null }).seq ?? 0;
  const newestFirst = db.prepare("SELECT type, data FROM events WHERE job_id = ? AND seq <= ? AND type IN ('output', 'task') ORDER BY seq DESC");
  const read: Array<{ type: string; index: number; text?: string; task?: TaskEventData }> = [];
  let lines = 0;
  let bytes = 0;
  let complete = true;
  for (const row of newestFirst.iterate(jobId, lastEventId) as Iterable<{ type: string; data: string }>) {
    // One line more than asked: the oldest one read may be the end of a line begun earlier.
    if (lines > maxLines || bytes > JOB_LOG_MAX_BYTES || read.length >= JOB_LOG_MAX_EVENTS) {
      complete = false;
      break;
    }
    const data = parseJson<Record<string, unknown> | null>(row.data, null);
    const index = data?.index;
    if (typeof index !== 'number') continue;
    if (row.type === 'output' && typeof data?.text === 'string') {
      read.push({ type: 'output', index, text: data.text });
      lines += countNewlines(data.text);
      bytes += data.text.length;
    } else if (row.type === 'task') {
      const task = taskEventDataOf(data);
      if (!task) continue;
      read.push({ type: 'task', index, task });
      lines++;
    }
  }
  // Oldest first; a task's text joins its earlier text until a newline ends the line.
  const out: JobLogLine[] = [];
  const unfinished = new Map<number, string>();
  for (const event of read.reverse()) {
    if (event.task) {
      out.push({ index: event.index, source: 'system', text: describeTaskEvent(event.task) });
      continue;
    }
    const parts = ((unfinished.get(event.index) ?? '') + event.text).split('\n');
    unfinished.set(event.index, parts.pop()!);
    for (const text of parts) out.push(lineOf(event.index, text));
  }
  for (const [index, text] of unfinished) if (text) out.push(lineOf(index, text));
  return { job_id: jobId, lines: out.slice(-maxLines), complete: complete && out.length <= maxLines, last_event_id: String(lastEventId) };
}

function lineOf(index: number, text: string): JobLogLine {
  return { index, ...logLine(text) };
}

function countNewlines(text: string): number {
  let n = 0;
  for (let at = text.indexOf('\n'); at !== -1; at = text.indexOf('\n', at + 1)) n++;
  return n;
}
