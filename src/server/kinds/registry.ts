import type { JobType } from '../../api/job-kinds.js';
import { invalid } from '../errors.js';
import { benchmark } from './benchmark.js';
import type { JobKind } from './kind.js';
import { mapReduce } from './map-reduce.js';
import { structuredRunner } from './structured-runner.js';
import { sweep } from './sweep.js';

/**
 * Every job kind this server runs, by the `type` a request names. The names are `JOB_TYPES`
 * (src/api/job-kinds.ts: the request schema and the CLI's `--type` read the same list); the
 * type check below fails when a name has no module or a module no name. Recipe jobs are not a
 * kind of their own: `RecipeService.jobRequest` (recipes.ts) turns one into a `structured_runner`
 * request of the recipe's project, planned and aggregated as that kind.
 */
export const JOB_KINDS: Readonly<Record<JobType, JobKind>> = {
  structured_runner: structuredRunner,
  sweep,
  map_reduce: mapReduce,
  benchmark,
};

/** The kinds a server plans with: the registry above, or (in tests) one with a kind added. */
export type JobKinds = Readonly<Record<string, JobKind>>;

/** The kind a request or a stored job names; one this server does not know is refused, naming `type`. */
export function kindOf(type: string, kinds: JobKinds = JOB_KINDS): JobKind {
  const kind = Object.hasOwn(kinds, type) ? kinds[type] : undefined;
  if (!kind) throw invalid('invalid_job', `type: unknown job kind "${type}": expected one of ${Object.keys(kinds).join(', ')}`, 'type');
  return kind;
}
