/**
 * A job's log holds the tasks' own output and lines the system writes about them (start,
 * completion, failure with the reason, retry/reassignment). System lines start with this prefix,
 * in the server's log files and in `job logs`; in `--json` they carry `"source": "system"`.
 */
export const SYSTEM_LINE_PREFIX = '[cycle] ';

export type LogSource = 'system' | 'output';

/** What a `task` event says (server `state.ts`), as far as a log line needs it. */
export interface TaskEventData {
  index: number;
  status: string;
  attempt?: number;
  error?: string | null;
  reason?: string;
  /** `running` on a machine of the pool: its name, and the GPUs it was given. */
  machine?: string;
  gpus?: number[];
}

/** A `task` event's data as a log line needs it, or undefined when it has no index and status (a server we did not write). */
export function taskEventDataOf(data: unknown): TaskEventData | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const index: unknown = Reflect.get(data, 'index');
  const status: unknown = Reflect.get(data, 'status');
  if (typeof index !== 'number' || typeof status !== 'string') return undefined;
  const attempt: unknown = Reflect.get(data, 'attempt');
  const error: unknown = Reflect.get(data, 'error');
  const reason: unknown = Reflect.get(data, 'reason');
  const machine: unknown = Reflect.get(data, 'machine');
  const gpus: unknown = Reflect.get(data, 'gpus');
  return {
    index,
    status,
    ...(typeof attempt === 'number' ? { attempt } : {}),
    ...(typeof error === 'string' ? { error } : {}),
    ...(typeof reason === 'string' ? { reason } : {}),
    ...(typeof machine === 'string' && machine ? { machine } : {}),
    ...(Array.isArray(gpus) && gpus.length && gpus.every((gpu) => Number.isInteger(gpu)) ? { gpus: gpus as number[] } : {}),
  };
}

/** The system line for a task event, without the prefix or newline. */
export function describeTaskEvent(data: TaskEventData): string {
  const task = `task ${data.index}`;
  switch (data.status) {
    case 'running':
      // A pool machine's lease names where the task went (the worker on the server's own machine does not).
      if (data.machine)
        return `${task} assigned to machine ${data.machine}${data.gpus ? ` on GPU ${data.gpus.join(', ')}` : ''} (attempt ${data.attempt ?? 1})`;
      return `${task} started (attempt ${data.attempt ?? 1})`;
    case 'succeeded':
      return `${task} succeeded`;
    case 'failed':
      return `${task} failed: ${firstLine(data.error ?? data.reason ?? 'failed')}`;
    case 'cancelled':
      return `${task} cancelled`;
    case 'queued':
      return `${task} queued again to run on another attempt (${firstLine(data.reason ?? data.error ?? 'requeued')})`;
    default:
      return `${task} ${data.status}`;
  }
}

export function systemLine(data: TaskEventData): string {
  return `${SYSTEM_LINE_PREFIX}${describeTaskEvent(data)}\n`;
}

/** Splits a log into lines told apart by source (a system line starts with the prefix). */
export function splitLog(text: string): Array<{ source: LogSource; text: string }> {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.map(logLine);
}

/** One line of a log told apart by source: a system line loses its prefix. */
export function logLine(line: string): { source: LogSource; text: string } {
  return line.startsWith(SYSTEM_LINE_PREFIX) ? { source: 'system', text: line.slice(SYSTEM_LINE_PREFIX.length) } : { source: 'output', text: line };
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? '';
}
