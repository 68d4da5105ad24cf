import { useState } from 'preact/hooks';
import { enc, getJson, type Job, query } from './api.js';
import { DataTable, duration, Failure, Link, navigate, Status, Tags, useEvents, useLoad, useThrottled } from './util.js';

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
        <DataTable
          rows={list.data.jobs}
          rowKey={(job) => job.id}
          class="jobs"
          rowAttrs={(job) => ({ 'data-job': job.id })}
          columns={[
            { label: 'Job', class: 'mono', cell: (job) => <Link href={`/jobs/${enc(job.id)}`}>{job.id}</Link> },
            { label: 'Status', cell: (job) => <Status status={job.status} /> },
            { label: 'Kind', cell: (job) => job.type },
            { label: 'Project', cell: (job) => job.project },
            { label: 'Tags', cell: (job) => <Tags tags={job.tags} /> },
            { label: 'Tasks', class: 'tasks-cell', cell: (job) => <TaskBar counts={job.counts} /> },
            { label: 'Duration', cell: (job) => duration(job.started_at, job.finished_at) },
            {
              label: 'Cost',
              cell: (job) => {
                const hold = list.data!.holds.get(job.id);
                return !hold ? '—' : hold.state === 'held' ? `$${hold.amount_usd.toFixed(4)} held` : `$${(hold.charged_usd ?? 0).toFixed(4)}`;
              },
            },
          ]}
        />
      )}
      <nav class="pager">
        {cursor && <button onClick={() => filter({})}>Newest</button>}
        {list.data?.next_cursor && <button onClick={() => navigate(`/jobs${query({ status, project, tag, cursor: list.data!.next_cursor! })}`)}>Older</button>}
      </nav>
    </section>
  );
}

/** A job's tasks done of all, and a bar of the succeeded and the failed or cancelled. */
function TaskBar(props: { counts: Job['counts'] }) {
  const { counts } = props;
  const share = (n: number) => `${(100 * n) / Math.max(1, counts.total)}%`;
  return (
    <>
      <span>
        {counts.succeeded + counts.failed + counts.cancelled}/{counts.total}
      </span>
      <span class="bar" aria-hidden="true">
        <span class="bar-ok" style={{ width: share(counts.succeeded) }} />
        <span class="bar-bad" style={{ width: share(counts.failed + counts.cancelled) }} />
      </span>
    </>
  );
}
