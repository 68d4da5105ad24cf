import path from 'node:path';
import type { DB } from '../db.js';
import { isTerminal, type JobService } from '../jobs.js';
import { MAX_TASK_PAYLOAD_BYTES, mib } from '../planner.js';
import type { Lease } from './lease.js';

/** Finished jobs whose results document `_shared.resolve` keeps (each may be a whole job's results). */
const RESOLVED_RESULTS_KEPT = 16;

/**
 * The platform directives of a task's payload, resolved when it is leased (the same for every
 * job kind): `_artifacts.download` becomes files for the worker to fetch and their paths,
 * `_shared.resolve` becomes values (a kv entry, a dependency's results). Throws why a task cannot run.
 */
export class DirectiveResolver {
  /**
   * `_shared.resolve` of a job's results: a finished job's never change, so its document is
   * built once, not once per task of every job that resolves it (oldest dropped first).
   */
  private readonly finishedResults = new Map<string, unknown>();

  constructor(private readonly options: { db: DB; jobs: JobService }) {}

  /** `_artifacts.download` files to fetch (and their paths in the payload), `_shared.resolve` values into the payload. */
  resolve(payload: Record<string, unknown>, projectName: string): { payload: Record<string, unknown>; downloads: Lease['downloads'] } {
    const { db, jobs } = this.options;
    const downloads: Lease['downloads'] = [];
    const artifacts = (payload._artifacts as { download?: Record<string, { job_id: string; artifact: string }> } | undefined)?.download;
    if (artifacts) {
      const paths: Record<string, string> = {};
      for (const [name, spec] of Object.entries(artifacts)) {
        // Checked at submit too (depends_on); again here for jobs stored before that check.
        if (!jobs.projectJob(spec.job_id, projectName)) throw new Error(`_artifacts.download.${name}: no job "${spec.job_id}" in project "${projectName}"`);
        const candidates = jobs.artifacts({ jobId: spec.job_id });
        const wanted = spec.artifact;
        const match =
          candidates.find((a) => a.name === wanted) ??
          candidates.find((a) => path.posix.basename(a.name) === wanted) ??
          candidates.find((a) => path.posix.basename(a.name).replace(/\.[^.]*$/, '') === wanted);
        if (!match)
          throw new Error(
            `_artifacts.download.${name}: job ${spec.job_id} has no artifact "${wanted}" (it has: ${candidates.map((a) => a.name).join(', ') || 'none'})`,
          );
        const fileName = path.posix.basename(match.name);
        downloads.push({ name, artifactId: match.id, fileName });
        paths[name] = `/computalot/artifacts/${name}/${fileName}`;
      }
      payload = { ...payload, _artifacts: { ...(payload._artifacts as object), paths } };
    }
    const resolve = (payload._shared as { resolve?: Record<string, { kv?: string; job?: string; path?: string }> } | undefined)?.resolve;
    if (resolve) {
      const values: Record<string, unknown> = {};
      for (const [name, spec] of Object.entries(resolve)) {
        if (spec.kv !== undefined) {
          const row = db.prepare('SELECT value FROM kv WHERE project = ? AND key = ?').get(projectName, spec.kv) as { value: string } | undefined;
          if (!row) throw new Error(`_shared.resolve.${name}: project ${projectName} has no kv key "${spec.kv}"`);
          values[name] = JSON.parse(row.value);
        } else if (spec.job !== undefined) {
          if (!jobs.projectJob(spec.job, projectName)) throw new Error(`_shared.resolve.${name}: no job "${spec.job}" in project "${projectName}"`);
          // The whole results document of the job goes into this task's payload: sized first.
          const bytes = jobs.resultBytes(spec.job);
          if (bytes > MAX_TASK_PAYLOAD_BYTES)
            throw new Error(
              `_shared.resolve.${name}: job ${spec.job}'s results are about ${mib(bytes)}; at most ${mib(MAX_TASK_PAYLOAD_BYTES)} can be resolved into a payload: have it write big outputs to /artifacts and download them with _artifacts.download`,
            );
          const results = this.resultsOf(spec.job);
          values[name] = spec.path ? pick(results, spec.path) : results;
        }
      }
      payload = { ...payload, _shared: { ...(payload._shared as object), values } };
    }
    return { payload, downloads };
  }

  /** A job's results document; a finished job's from the cache (the job must still exist: require). */
  private resultsOf(jobId: string): unknown {
    const { jobs } = this.options;
    const row = jobs.require(jobId);
    if (!isTerminal(row.status)) return jobs.results(row);
    let results = this.finishedResults.get(jobId);
    if (results === undefined) {
      results = jobs.results(row);
      this.finishedResults.set(jobId, results);
      const oldest = this.finishedResults.keys().next();
      if (this.finishedResults.size > RESOLVED_RESULTS_KEPT && !oldest.done) this.finishedResults.delete(oldest.value);
    }
    return results;
  }
}

function pick(value: unknown, dotted: string): unknown {
  let current = value;
  for (const part of dotted.split('.')) {
    if (current === null || typeof current !== 'object') return null;
    current = (current as Record<string, unknown>)[part];
  }
  return current ?? null;
}
