import { DIRECTIVE_NAME_PATTERN, DIRECTIVE_NAME_RULE } from '../../project/names.js';
import { invalid } from '../errors.js';
import { MAX_TASK_BYTES, MAX_TASKS, mib, type JobPlan } from '../kinds/shared.js';

/** The checks of a submission that are the same for every job kind (a kind's own are in its module). */

/** The tasks of a whole request (a batch's jobs together) against the caps, before any is made. */
export function checkRequestTotals(prepared: Array<{ plan: Pick<JobPlan, 'count' | 'bytes'> }>): void {
  const count = prepared.reduce((n, p) => n + p.plan.count, 0);
  if (count > MAX_TASKS)
    throw invalid('invalid_job', `the jobs would make ${count} tasks together; at most ${MAX_TASKS} per request: send them in several requests`, 'jobs');
  const bytes = prepared.reduce((n, p) => n + p.plan.bytes, 0);
  if (bytes > MAX_TASK_BYTES)
    throw invalid(
      'invalid_job',
      `the jobs' tasks would store about ${mib(bytes)} of payload together; at most ${mib(MAX_TASK_BYTES)} per request: send them in several requests`,
      'jobs',
    );
}

/** A payload's platform directives (`_artifacts.download`, `_shared.resolve`): well formed, and naming only jobs in `depends_on`. */
export function checkDirectives(payload: Record<string, unknown>, dependsOn: string[], where: string): void {
  const artifacts = (payload._artifacts as { download?: unknown } | undefined)?.download;
  if (artifacts !== undefined) {
    if (artifacts === null || typeof artifacts !== 'object' || Array.isArray(artifacts))
      throw invalid('invalid_job', `${where}._artifacts.download must be {"name": {"job_id": "...", "artifact": "..."}}`, `${where}._artifacts.download`);
    for (const [name, spec] of Object.entries(artifacts as Record<string, unknown>)) {
      // The name becomes a folder, /computalot/artifacts/<name>/, inside the task's work folder.
      if (!DIRECTIVE_NAME_PATTERN.test(name))
        throw invalid(
          'invalid_job',
          `${where}._artifacts.download: invalid name ${JSON.stringify(name)}: expected ${DIRECTIVE_NAME_RULE}`,
          `${where}._artifacts.download`,
        );
      const s = spec as { job_id?: unknown; artifact?: unknown } | null;
      if (!s || typeof s.job_id !== 'string' || typeof s.artifact !== 'string')
        throw invalid('invalid_job', `${where}._artifacts.download.${name} needs "job_id" and "artifact" strings`, `${where}._artifacts.download.${name}`);
      if (!dependsOn.includes(s.job_id))
        throw invalid('invalid_job', `${where}._artifacts.download.${name}: job ${s.job_id} must be in depends_on`, 'depends_on');
    }
  }
  const resolve = (payload._shared as { resolve?: unknown } | undefined)?.resolve;
  if (resolve !== undefined) {
    if (resolve === null || typeof resolve !== 'object' || Array.isArray(resolve))
      throw invalid(
        'invalid_job',
        `${where}._shared.resolve must be {"name": {"kv": "key"} | {"job": "job_id", "path": "items.0.result"}}`,
        `${where}._shared.resolve`,
      );
    for (const [name, spec] of Object.entries(resolve as Record<string, unknown>)) {
      const s = spec as { kv?: unknown; job?: unknown } | null;
      if (!s || (typeof s.kv !== 'string' && typeof s.job !== 'string'))
        throw invalid('invalid_job', `${where}._shared.resolve.${name} needs "kv" or "job"`, `${where}._shared.resolve.${name}`);
      if (typeof s.job === 'string' && !dependsOn.includes(s.job))
        throw invalid('invalid_job', `${where}._shared.resolve.${name}: job ${s.job} must be in depends_on`, 'depends_on');
    }
  }
}
