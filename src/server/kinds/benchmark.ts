import { parseJson } from '../db.js';
import { invalid } from '../errors.js';
import type { JobKind } from './kind.js';
import { checked, composedPayloadBytes, jsonBytes, MAX_TASKS, type JobPlan } from './shared.js';

/**
 * `benchmark`: one task per strategy of `payload.strategies` and repeat (`payload.repeats`);
 * the aggregate is per strategy: runs, successes, mean duration, each numeric metric's mean/min/max.
 */
export const benchmark: JobKind = {
  name: 'benchmark',
  plan(request, { directives, command }) {
    if (request.fan_out) throw invalid('invalid_job', 'a benchmark fans out over its strategies: drop fan_out', 'fan_out');
    return checked(benchmarkPlan(request.payload, directives, command));
  },
  aggregate({ tasks, payloadOf, withResults }) {
    const strategies: Record<
      string,
      {
        runs: number;
        succeeded: number;
        mean_duration_s: number | null;
        results: unknown[];
        metrics: Record<string, { mean: number; min: number; max: number }>;
      }
    > = {};
    const durations = new Map<string, number[]>();
    const numbers = new Map<string, Map<string, number[]>>();
    for (const task of tasks()) {
      const strategy = (payloadOf(task)._benchmark as { strategy?: string } | undefined)?.strategy ?? 'default';
      const entry = (strategies[strategy] ??= { runs: 0, succeeded: 0, mean_duration_s: null, results: [], metrics: {} });
      entry.runs++;
      if (task.status === 'succeeded') entry.succeeded++;
      const result = parseJson<unknown>(task.result, null);
      if (withResults) entry.results.push(result);
      if (task.started_at && task.finished_at) pushTo(durations, strategy, (Date.parse(task.finished_at) - Date.parse(task.started_at)) / 1000);
      if (result && typeof result === 'object' && !Array.isArray(result)) {
        const metrics = numbers.get(strategy) ?? new Map<string, number[]>();
        numbers.set(strategy, metrics);
        for (const [key, value] of Object.entries(result)) if (typeof value === 'number') pushTo(metrics, key, value);
      }
    }
    for (const [strategy, entry] of Object.entries(strategies)) {
      const times = durations.get(strategy) ?? [];
      entry.mean_duration_s = times.length ? times.reduce((a, b) => a + b, 0) / times.length : null;
      for (const [key, values] of numbers.get(strategy) ?? []) {
        entry.metrics[key] = {
          mean: values.reduce((a, b) => a + b, 0) / values.length,
          min: values.reduce((a, b) => Math.min(a, b)),
          max: values.reduce((a, b) => Math.max(a, b)),
        };
      }
    }
    return { strategies, ...(withResults ? {} : { results_omitted: true }) };
  },
};

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** One task per strategy and repeat, counted as strategies × repeats before any is made. */
function benchmarkPlan(payload: Record<string, unknown>, directives: Record<string, unknown>, command: string[] | undefined): JobPlan {
  const strategies = payload.strategies;
  if (strategies === null || typeof strategies !== 'object' || Array.isArray(strategies) || Object.keys(strategies).length === 0) {
    throw invalid('invalid_job', 'a benchmark needs payload.strategies = {"name": {payload}, ...}', 'payload.strategies');
  }
  const repeats = payload.repeats ?? 1;
  if (typeof repeats !== 'number' || !Number.isInteger(repeats) || repeats < 1 || repeats > 1000) {
    throw invalid('invalid_job', 'payload.repeats must be an integer from 1 to 1000', 'payload.repeats');
  }
  const entries = Object.entries(strategies);
  const count = entries.length * repeats;
  if (count > MAX_TASKS) {
    throw invalid('invalid_job', `${entries.length} strategies × ${repeats} repeats = ${count} tasks; at most ${MAX_TASKS} per job`, 'payload.strategies');
  }
  let bytes = 0;
  let maxItemBytes = 0;
  for (const [strategy, strategyPayload] of entries) {
    if (strategyPayload === null || typeof strategyPayload !== 'object' || Array.isArray(strategyPayload)) {
      throw invalid('invalid_job', `payload.strategies.${strategy} must be an object (that strategy's payload)`, `payload.strategies.${strategy}`);
    }
    const itemBytes = jsonBytes(strategyPayload) + strategy.length + 48;
    bytes += itemBytes * repeats;
    maxItemBytes = Math.max(maxItemBytes, itemBytes);
  }
  const extra = command ? { command } : {};
  return {
    count,
    bytes,
    taskPayloadBytes: composedPayloadBytes({ item: jsonBytes(directives), directives: 0 }, { bytes: maxItemBytes, items: 1, batched: false }),
    base: { item: directives, directives },
    *tasks() {
      for (const [strategy, strategyPayload] of entries) {
        for (let repeat = 0; repeat < repeats; repeat++) {
          yield { kind: 'task', part: { merge: { ...(strategyPayload as Record<string, unknown>), _benchmark: { strategy, repeat } } }, items: 1, ...extra };
        }
      }
    },
  };
}
