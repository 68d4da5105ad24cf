import { useState } from 'preact/hooks';
import { enc, getJson, type Job, query } from './api.js';
import { duration, Failure, Link, navigate, Status, useEvents, useLoad, useThrottled } from './util.js';

const STATUSES = ['', 'planning', 'queued', 'running', 'completed', 'partial', 'failed', 'cancelled'];
const PAGE = 50;

interface JobsAnswer {
  jobs: Job[];
  next_cursor?: string | null;
  last_event_id?: string;
}

export function JobsPage(props: { search: URLSearchParams }) {
  const status = props.search.get('status') ?? '';
  const project = props.search.get('project') ?? '';
  const tag = props.search.get('tag') ?? '';
  const cursor = props.search.get('cursor') ?? '';
  const list = useLoad(
    async (signal) => {
      const [jobs, holds] = await Promise.all([
        getJson<JobsAnswer>(`/api/v1/jobs${query({ status, project, tag, cursor, limit: PAGE })}`, { signal }),
        getJson<{ holds: Array<{ job_id: string | null; amount_usd: number; charged_usd?: number | null; state: string }> }>('/api/v1/account/holds', {
          signal,
        }).catch(() => ({
          holds: [],
        })),
      ]);
      return { ...jobs, holds: new Map(holds.holds.map((h) => [h.job_id, h])) };
    },
    [status, project, tag, cursor],
  );
  // Opened once, from the first page's event id: every job's status changes, each read again (throttled).
  const [since, setSince] = useState<string | undefined>(undefined);
  if (since === undefined && list.data?.last_event_id) setSince(list.data.last_event_id);
  const refresh = useThrottled(list.reload, 300);
  useEvents(since ? `/api/v1/jobs/stream?last_event_id=${enc(since)}` : undefined, refresh, ['job', 'task']);

  const filter = (changes: Record<string, string>) => navigate(`/jobs${query({ status, project, tag, ...changes, cursor: '' })}`);
  return (
    <section>
      <h1>Jobs</h1>
      <form
        class="filters"
        onSubmit={(event) => {
          event.preventDefault();
          const form = new FormData(event.currentTarget);
          filter({ status: String(form.get('status') ?? ''), project: String(form.get('project') ?? ''), tag: String(form.get('tag') ?? '') });
        }}
      >
        <label>
          Status
          <select name="status" value={status} onChange={(event) => filter({ status: event.currentTarget.value })}>
            {STATUSES.map((s) => (
              <option value={s}>{s || 'any'}</option>
            ))}
          </select>
        </label>
        <label>
          Project <input name="project" value={project} placeholder="any" />
        </label>
        <label>
          Tag <input name="tag" value={tag} placeholder="any" />
        </label>
        <button type="submit">Filter</button>
      </form>
      <Failure error={list.error} />
      {list.data && list.data.jobs.length === 0 && (
        <p class="empty">No jobs{status || project || tag ? ' match these filters' : ' yet: submit one with cycle job submit'}.</p>
      )}
      {list.data && list.data.jobs.length > 0 && (
        <div class="table-wrap">
          <table class="jobs cards">
            <thead>
              <tr>
                <th>Job</th>
                <th>Status</th>
                <th>Kind</th>
                <th>Project</th>
                <th>Tags</th>
                <th>Tasks</th>
                <th>Duration</th>
                <th>Cost</th>
              </tr>
            </thead>
            <tbody>
              {list.data.jobs.map((job) => {
                const done = job.counts.succeeded + job.counts.failed + job.counts.cancelled;
                const hold = list.data!.holds.get(job.id);
                return (
                  <tr key={job.id} data-job={job.id}>
                    <td data-label="Job" class="mono">
                      <Link href={`/jobs/${enc(job.id)}`}>{job.id}</Link>
                    </td>
                    <td data-label="Status">
                      <Status status={job.status} />
                    </td>
                    <td data-label="Kind">{job.type}</td>
                    <td data-label="Project">{job.project}</td>
                    <td data-label="Tags">
                      {job.tags.map((t) => (
                        <span class="tag">{t}</span>
                      ))}
                    </td>
                    <td data-label="Tasks" class="tasks-cell">
                      <span>
                        {done}/{job.counts.total}
                      </span>
                      <span class="bar" aria-hidden="true">
                        <span class="bar-ok" style={{ width: `${(100 * job.counts.succeeded) / Math.max(1, job.counts.total)}%` }} />
                        <span class="bar-bad" style={{ width: `${(100 * (job.counts.failed + job.counts.cancelled)) / Math.max(1, job.counts.total)}%` }} />
                      </span>
                    </td>
                    <td data-label="Duration">{duration(job.started_at, job.finished_at)}</td>
                    <td data-label="Cost">
                      {!hold ? '—' : hold.state === 'held' ? `$${hold.amount_usd.toFixed(4)} held` : `$${(hold.charged_usd ?? 0).toFixed(4)}`}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      <nav class="pager">
        {cursor && <button onClick={() => filter({})}>Newest</button>}
        {list.data?.next_cursor && <button onClick={() => navigate(`/jobs${query({ status, project, tag, cursor: list.data!.next_cursor! })}`)}>Older</button>}
      </nav>
    </section>
  );
}
