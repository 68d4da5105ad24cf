import { describe, expect, it } from 'vitest';
import { jobRequestSchema, type JobRequestInput } from '../../src/api/schemas.js';
import { composePayload, MAX_TASK_BYTES, MAX_TASKS, planJob } from '../../src/server/planner.js';
import { DomainError } from '../../src/server/errors.js';
import { HttpError, STATUS_OF_PROBLEM } from '../../src/server/http/router.js';
import { jsonBytes } from '../../src/server/kinds/shared.js';

/** The tasks with their composed payloads; the count said before making them must be right. */
const plan = (input: Partial<JobRequestInput>) => {
  const planned = planJob(jobRequestSchema.parse({ project: 'p', ...input }));
  const tasks = [...planned.tasks()].map(({ part, ...task }) => ({ ...task, payload: composePayload(planned.base, part) }));
  expect(tasks).toHaveLength(planned.count);
  return tasks;
};
const refusal = (input: Partial<JobRequestInput>): HttpError => {
  try {
    plan(input);
  } catch (error) {
    // The planner throws the domain's error; its HTTP status comes from the one table in http/router.ts.
    if (error instanceof DomainError) return new HttpError(STATUS_OF_PROBLEM[error.kind], error.code, error.message, error.field, error.extra);
    throw error;
  }
  throw new Error('expected a refusal');
};

describe('job planning', () => {
  it('one task without a fan-out', () => {
    expect(plan({ payload: { a: 1 } })).toEqual([{ kind: 'task', payload: { a: 1 }, items: 1 }]);
  });

  it('fan_out.by splits an array field', () => {
    expect(plan({ payload: { model: ['a', 'b'], k: 1 }, fan_out: { by: 'model' } }).map((t) => t.payload)).toEqual([
      { model: 'a', k: 1 },
      { model: 'b', k: 1 },
    ]);
  });

  it('fan_out.items gives each task its payload (directives kept)', () => {
    const tasks = plan({ payload: { ignored: 1, _shared: { resolve: {} } }, fan_out: { items: [{ x: 1 }, { x: 2 }] } });
    expect(tasks.map((t) => t.payload)).toEqual([
      { _shared: { resolve: {} }, x: 1 },
      { _shared: { resolve: {} }, x: 2 },
    ]);
  });

  it('fan_out.chunks splits a range', () => {
    const tasks = plan({ payload: { seed: 7 }, fan_out: { chunks: 3, range_field: 'seeds', total: 10 } });
    expect(tasks.map((t) => t.payload)).toEqual([
      { seed: 7, seeds: { start: 0, end: 4 } },
      { seed: 7, seeds: { start: 4, end: 8 } },
      { seed: 7, seeds: { start: 8, end: 10 } },
    ]);
  });

  it('batch_size groups items and adds payload._batch', () => {
    const tasks = plan({ payload: { n: Array.from({ length: 20 }, (_, i) => i) }, fan_out: { by: 'n' }, batch_size: 5 });
    expect(tasks).toHaveLength(4);
    expect(tasks[1]!.items).toBe(5);
    expect(tasks[1]!.payload._batch).toMatchObject({ index: 1, count: 4, size: 5, first_item: 5, items: [{ n: 5 }, { n: 6 }, { n: 7 }, { n: 8 }, { n: 9 }] });
    expect(plan({ payload: { n: [1, 2, 3] }, fan_out: { by: 'n' }, batch_per_task: 2 }).map((t) => t.items)).toEqual([2, 1]);
  });

  it('a sweep runs the cartesian product of its grid', () => {
    const tasks = plan({ type: 'sweep', payload: { grid: { lr: [0.1, 0.01], depth: [2, 4, 8] }, epochs: 3 } });
    expect(tasks).toHaveLength(6);
    expect(tasks[0]!.payload).toEqual({ epochs: 3, params: { lr: 0.1, depth: 2 } });
    expect(tasks[5]!.payload).toEqual({ epochs: 3, params: { lr: 0.01, depth: 8 } });
  });

  it('map_reduce: map tasks, then a reduce task with its own command', () => {
    const tasks = plan({ type: 'map_reduce', payload: { part: [1, 2, 3] }, fan_out: { by: 'part' }, reduce_command: ['python3', 'reduce.py'] });
    expect(tasks.map((t) => t.kind)).toEqual(['map', 'map', 'map', 'reduce']);
    expect(tasks[3]!.command).toEqual(['python3', 'reduce.py']);
  });

  it('a benchmark runs each strategy `repeats` times', () => {
    const tasks = plan({ type: 'benchmark', payload: { strategies: { fast: { n: 1 }, slow: { n: 2 } }, repeats: 3 } });
    expect(tasks).toHaveLength(6);
    expect(tasks.map((t) => (t.payload._benchmark as { strategy: string }).strategy)).toEqual(['fast', 'fast', 'fast', 'slow', 'slow', 'slow']);
    expect(tasks[4]!.payload).toMatchObject({ n: 2, _benchmark: { strategy: 'slow', repeat: 1 } });
  });

  it.each([
    [{ payload: { a: [1] }, fan_out: { by: 'a', items: [{}] } }, 'fan_out', /exactly one of/],
    [{ payload: {}, fan_out: { chunks: 2, total: 10 } }, 'fan_out', /needs all of/],
    [{ payload: { a: 1 }, fan_out: { by: 'a' } }, 'payload.a', /must be an array/],
    [{ payload: { a: [] }, fan_out: { by: 'a' } }, 'payload.a', /is empty/],
    [{ payload: { a: [1] }, fan_out: { by: 'a' }, batch_size: 2, batch_per_task: 2 }, 'batch_per_task', /not both/],
    [{ type: 'sweep' as const, payload: {} }, 'payload.grid', /payload.grid/],
    [{ type: 'sweep' as const, payload: { grid: { a: [] } } }, 'payload.grid.a', /non-empty/],
    [{ type: 'map_reduce' as const, payload: {} }, 'reduce_command', /reduce_command/],
    [{ type: 'benchmark' as const, payload: { strategies: { a: 1 } } }, 'payload.strategies.a', /must be an object/],
    [{ type: 'benchmark' as const, payload: { strategies: { a: {} }, repeats: 0 } }, 'payload.repeats', /repeats/],
  ])('422: %j', (input, field, message) => {
    const error = refusal(input as Partial<JobRequestInput>);
    expect(error.status).toBe(422);
    expect(error.field).toBe(field);
    expect(error.message).toMatch(message);
  });

  it.each([
    [
      'a benchmark',
      { type: 'benchmark' as const, payload: { strategies: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`s${i}`, {}])), repeats: 1000 } },
      'payload.strategies',
      /200 strategies × 1000 repeats = 200000 tasks/,
    ],
    [
      'a sweep',
      { type: 'sweep' as const, payload: { grid: { a: Array.from({ length: 400 }, (_, i) => i), b: Array.from({ length: 400 }, (_, i) => i) } } },
      'payload.grid',
      /160000 points/,
    ],
    ['a fan-out', { payload: { n: Array.from({ length: MAX_TASKS + 1 }, () => 0) }, fan_out: { by: 'n' } }, 'payload.n', /100001 items/],
    [
      'a map_reduce one over',
      { type: 'map_reduce' as const, payload: { n: Array.from({ length: MAX_TASKS }, () => 0) }, fan_out: { by: 'n' }, reduce_command: ['r'] },
      'payload.n',
      /100001 tasks/,
    ],
  ])('%s over MAX_TASKS is refused before any task is made', (_name, input, field, message) => {
    const error = refusal(input as Partial<JobRequestInput>);
    expect(error.status).toBe(422);
    expect(error.field).toBe(field);
    expect(error.message).toMatch(message);
  });

  it('a plan says its count without making a task (a batched 100,000-item fan-out)', () => {
    const planned = planJob(
      jobRequestSchema.parse({ project: 'p', payload: { seed: 1 }, fan_out: { chunks: 100_000, range_field: 'r', total: 1_000_000 }, batch_size: 7 }),
    );
    expect(planned.count).toBe(Math.ceil(100_000 / 7));
    let made = 0;
    for (const task of planned.tasks()) made += task.items;
    expect(made).toBe(100_000);
  });

  it.each([
    [
      'grid values shared by many points',
      { type: 'sweep' as const, payload: { grid: { a: Array.from({ length: 300 }, () => 'x'.repeat(1000)), b: Array.from({ length: 300 }, (_, i) => i) } } },
      'payload.grid',
    ],
    [
      'a big strategy repeated',
      { type: 'benchmark' as const, payload: { strategies: { big: { blob: 'x'.repeat(700_000) } }, repeats: 1000 } },
      'payload.strategies',
    ],
  ])('tasks storing over MAX_TASK_BYTES are refused: %s', (_name, input, field) => {
    const error = refusal(input as Partial<JobRequestInput>);
    expect(error.status).toBe(422);
    expect(error.field).toBe(field);
    expect(error.message).toContain(`at most ${MAX_TASK_BYTES / (1024 * 1024)}.0 MiB`);
  });

  it('a fan-out stores its shared payload once: each part holds only what differs', () => {
    const planned = planJob(jobRequestSchema.parse({ project: 'p', payload: { blob: 'x'.repeat(9000), n: [1, 2, 3] }, fan_out: { by: 'n' }, batch_size: 2 }));
    const parts = [...planned.tasks()].map((t) => JSON.stringify(t.part));
    for (const part of parts) expect(part).not.toContain('xxx');
    expect(JSON.stringify(planned.base.item)).toContain('x'.repeat(9000));
    expect(composePayload(planned.base, [...planned.tasks()][1]!.part)).toEqual({
      _batch: { index: 1, count: 2, size: 1, first_item: 2, items: [{ blob: 'x'.repeat(9000), n: 3 }] },
    });
  });
});

describe('jsonBytes', () => {
  it('sizes numbers as JSON writes them (its fast path for numbers agrees with JSON.stringify)', () => {
    const numbers = [
      0,
      -0,
      1,
      -1,
      7.5,
      1e21,
      1e-7,
      -1.5e-10,
      123456789012345680000,
      Number.MAX_VALUE,
      Number.MIN_VALUE,
      0.1 + 0.2,
      Number.NaN,
      Infinity,
      -Infinity,
    ];
    for (const value of numbers) expect(jsonBytes(value), String(value)).toBe(JSON.stringify(value).length);
    for (const value of ['', 'a"b\\c\n', 'ünï', true, false, null, [1, 'x'], { a: 1 }]) expect(jsonBytes(value)).toBe(JSON.stringify(value).length);
  });
});
