import { describe, expect, it } from 'vitest';
import { jobRequestSchema, type JobRequestInput } from '../../src/api/schemas.js';
import { planJob } from '../../src/server/planner.js';
import { HttpError } from '../../src/server/http.js';

const plan = (input: Partial<JobRequestInput>) => planJob(jobRequestSchema.parse({ project: 'p', ...input }));
const refusal = (input: Partial<JobRequestInput>): HttpError => {
  try {
    plan(input);
  } catch (error) {
    if (error instanceof HttpError) return error;
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
});
