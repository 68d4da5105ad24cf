import { useMemo, useRef, useState } from 'preact/hooks';
import { type Artifact, change, enc, getJson, type Job, type ProgressPage, query, type Task, TERMINAL } from './api.js';
import { type Curve, ProgressChart } from './chart.js';
import { LogView } from './log.js';
import { bytes, duration, Failure, short, Status, useEvents, useLoad, useThrottled, when } from './util.js';

/** Tasks per window of the tasks table (the server pages them; the chart draws the same window's tasks). */
const TASK_WINDOW = 50;
/** Points per task the chart asks for: the server thins each series to this many. */
const CHART_POINTS = 1000;
const LOG_TAIL = 256 * 1024;

export function JobPage(props: { id: string }) {
  const id = props.id;
  const job = useLoad((signal) => getJson<Job>(`/api/v1/jobs/${enc(id)}`, { signal }), [id]);
  const [cursor, setCursor] = useState<string[]>(['0']);
  const [taskStatus, setTaskStatus] = useState('');
  const windowStart = cursor.at(-1)!;
  const tasks = useLoad(
    (signal) =>
      getJson<{ tasks: Task[]; next_cursor: string | null }>(
        `/api/v1/jobs/${enc(id)}/tasks${query({ limit: TASK_WINDOW, cursor: windowStart, status: taskStatus })}`,
        {
          signal,
        },
      ),
    [id, windowStart, taskStatus],
  );
  const progress = useLoad(
    (signal) => getJson<ProgressPage>(`/api/v1/jobs/${enc(id)}/progress${query({ limit: 20, cursor: windowStart, max_points: CHART_POINTS })}`, { signal }),
    [id, windowStart],
  );
  const [logTask, setLogTask] = useState<number | undefined>(undefined);
  const shownLogTask = logTask ?? tasks.data?.tasks[0]?.index ?? 0;
  const log = useLoad(
    (signal) =>
      getJson<{ tasks: Array<{ index: number; output: string }> }>(
        `/api/v1/jobs/${enc(id)}/output${query({ cursor: shownLogTask, limit: 1, tail: LOG_TAIL })}`,
        {
          signal,
        },
      ),
    [id, shownLogTask],
  );
  const [liveText, setLiveText] = useState<{ task: number; text: string }>({ task: -1, text: '' });
  const artifacts = useLoad((signal) => getJson<{ artifacts: Artifact[] }>(`/api/v1/artifacts${query({ job: id, limit: 1000 })}`, { signal }), [id]);

  const reloadJob = useThrottled(job.reload, 300);
  const reloadTasks = useThrottled(tasks.reload, 500);
  const reloadProgress = useThrottled(progress.reload, 1000);
  const reloadArtifacts = useThrottled(artifacts.reload, 1000);
  // The job's stream from the job's latest event: everything after the first read, live.
  const since = useRef<string | undefined>(undefined);
  if (since.current === undefined && job.data?.last_event_id) since.current = job.data.last_event_id;
  const logLoadedFor = log.data?.tasks[0]?.index;
  useEvents(
    since.current && !TERMINAL.has(job.data?.status ?? '') ? `/api/v1/jobs/${enc(id)}/stream?last_event_id=${enc(since.current)}` : undefined,
    (type, event) => {
      const data = (event as { data?: { index?: number; text?: string } }).data ?? {};
      if (type === 'job') reloadJob();
      if (type === 'task') {
        reloadJob();
        reloadTasks();
      }
      if (type === 'progress') reloadProgress();
      if (type === 'artifact') reloadArtifacts();
      if (type === 'output' && data.index === shownLogTask && typeof data.text === 'string')
        setLiveText((live) => ({ task: shownLogTask, text: (live.task === shownLogTask ? live.text : '') + data.text }));
      if (type === 'task' && data.index === shownLogTask) log.reload();
    },
    ['job', 'task', 'progress', 'output', 'artifact'],
  );
  const logText = (log.data?.tasks[0]?.output ?? '') + (liveText.task === shownLogTask && logLoadedFor === shownLogTask ? liveText.text : '');
  // A reload of the log holds everything the live text had: start the live text again from it.
  const [lastLog, setLastLog] = useState(log.data);
  if (lastLog !== log.data) {
    setLastLog(log.data);
    setLiveText({ task: shownLogTask, text: '' });
  }

  if (job.error) return <Failure error={job.error} />;
  if (!job.data) return <p class="muted">Loading {id}…</p>;
  const j = job.data;
  return (
    <section class="job">
      <header class="job-head">
        <h1 class="mono">{j.id}</h1>
        <Status status={j.status} />
        {!TERMINAL.has(j.status) && <CancelButton id={j.id} onDone={job.reload} />}
      </header>
      <dl class="summary">
        <dt>Kind</dt>
        <dd>{j.type}</dd>
        <dt>Project</dt>
        <dd>
          {j.project}
          {j.revision !== null ? ` (revision ${j.revision})` : ''}
        </dd>
        <dt>Tasks</dt>
        <dd>
          {j.counts.succeeded} succeeded, {j.counts.failed} failed, {j.counts.cancelled} cancelled, {j.counts.running} running, {j.counts.queued} queued of{' '}
          {j.counts.total}
        </dd>
        <dt>Tags</dt>
        <dd>{j.tags.length ? j.tags.map((t) => <span class="tag">{t}</span>) : '—'}</dd>
        <dt>Variant</dt>
        <dd>{short(j.variant, 200)}</dd>
        <dt>Meta</dt>
        <dd class="mono">{short(j.meta, 400)}</dd>
        <dt>Created</dt>
        <dd>{when(j.created_at)}</dd>
        <dt>Duration</dt>
        <dd>{duration(j.started_at, j.finished_at)}</dd>
      </dl>
      {j.error && (
        <div class="failure" role="alert">
          <strong>Error:</strong> {j.error}
          {j.recommended_action && (
            <p>
              <strong>What to do:</strong> {j.recommended_action}
            </p>
          )}
        </div>
      )}

      <h2>Progress</h2>
      <Progress page={progress.data} tasks={tasks.data?.tasks ?? []} error={progress.error} />

      <h2>Tasks</h2>
      <div class="filters">
        <label>
          Status
          <select value={taskStatus} onChange={(event) => (setTaskStatus(event.currentTarget.value), setCursor(['0']))}>
            {['', 'queued', 'running', 'succeeded', 'failed', 'cancelled'].map((s) => (
              <option value={s}>{s || 'any'}</option>
            ))}
          </select>
        </label>
      </div>
      <Failure error={tasks.error} />
      <div class="table-wrap">
        <table class="tasks cards">
          <thead>
            <tr>
              <th>#</th>
              <th>Status</th>
              <th>Item</th>
              <th>Attempts</th>
              <th>Exit</th>
              <th>Duration</th>
              <th>Latest progress</th>
              <th>Log</th>
            </tr>
          </thead>
          <tbody>
            {(tasks.data?.tasks ?? []).map((t) => (
              <tr key={t.id} class={t.index === shownLogTask ? 'selected' : ''}>
                <td data-label="#">{t.index}</td>
                <td data-label="Status">
                  <Status status={t.status} />
                </td>
                <td data-label="Item" class="mono">
                  {taskLabel(t)}
                </td>
                <td data-label="Attempts">{t.attempt}</td>
                <td data-label="Exit">{t.exit_code ?? '—'}</td>
                <td data-label="Duration">{t.duration_s != null ? `${t.duration_s.toFixed(1)} s` : duration(t.started_at, t.finished_at)}</td>
                <td data-label="Latest progress" class="mono">
                  {short(t.latest_progress, 60)}
                </td>
                <td data-label="Log">
                  <button type="button" onClick={() => setLogTask(t.index)} aria-pressed={t.index === shownLogTask}>
                    Log
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <nav class="pager">
        {cursor.length > 1 && <button onClick={() => setCursor(cursor.slice(0, -1))}>Previous tasks</button>}
        {tasks.data?.next_cursor && <button onClick={() => setCursor([...cursor, tasks.data!.next_cursor!])}>Next tasks</button>}
      </nav>

      <h2>Log of task {shownLogTask}</h2>
      <Failure error={log.error} />
      <LogView text={logText} label={`log of task ${shownLogTask}`} />

      <h2>Results</h2>
      <Results id={id} status={j.status} />

      <h2>Artifacts</h2>
      <Artifacts list={artifacts.data?.artifacts} error={artifacts.error} />
    </section>
  );
}

/** What tells a task apart in a sweep or fan-out: its payload (a fan-out item, a sweep's point), without the `_` directives. */
function taskLabel(task: Task): string {
  const payload = task.payload;
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return short(payload, 60);
  return short(Object.fromEntries(Object.entries(payload).filter(([key]) => !key.startsWith('_'))), 60);
}

function CancelButton(props: { id: string; onDone: () => void }) {
  const [state, setState] = useState<{ busy: boolean; error?: string }>({ busy: false });
  return (
    <span>
      <button
        type="button"
        class="danger"
        disabled={state.busy}
        onClick={async () => {
          setState({ busy: true });
          try {
            await change('PUT', `/api/v1/jobs/${enc(props.id)}/cancel`);
            setState({ busy: false });
            props.onDone();
          } catch (error) {
            setState({ busy: false, error: (error as Error).message });
          }
        }}
      >
        {state.busy ? 'Cancelling…' : 'Cancel job'}
      </button>
      <Failure error={state.error} />
    </span>
  );
}

function Progress(props: { page: ProgressPage | undefined; tasks: Task[]; error?: string | undefined }) {
  const [field, setField] = useState<string | undefined>(undefined);
  const page = props.page;
  const fields = (page?.fields ?? []).filter((f) => f !== 'step');
  const chosen = field && fields.includes(field) ? field : fields[0];
  const labels = new Map(props.tasks.map((t) => [t.index, taskLabel(t)]));
  const withStep = page ? page.tasks.every((t) => t.points.every((p) => 'step' in p.values)) : true;
  const curves = useMemo((): Curve[] => {
    if (!page || !chosen) return [];
    return page.tasks
      .filter((t) => t.points.some((p) => chosen in p.values))
      .map((t) => {
        const points = t.points.filter((p) => chosen in p.values);
        return {
          label: `task ${t.index}${labels.has(t.index) ? ` ${labels.get(t.index)}` : ''}`,
          xs: points.map((p) => (withStep ? p.values.step! : p.at / 1000)),
          ys: points.map((p) => p.values[chosen]!),
        };
      });
  }, [page, chosen, withStep, props.tasks]);
  if (props.error) return <Failure error={props.error} />;
  if (!page) return <p class="muted">Loading…</p>;
  if (!chosen)
    return (
      <p class="empty">
        No progress yet. A task reports progress by printing lines such as <code>COMPUTALOT_PROGRESS:{'{"step": 1, "loss": 0.5}'}</code>.
      </p>
    );
  const thinned = page.tasks.some((t) => t.points.length < t.points_total);
  return (
    <div class="progress">
      <div class="filters">
        <label>
          Field
          <select value={chosen} onChange={(event) => setField(event.currentTarget.value)}>
            {fields.map((f) => (
              <option value={f}>{f}</option>
            ))}
          </select>
        </label>
        <span class="muted">
          {curves.length} task{curves.length === 1 ? '' : 's'} of this window; drag to zoom, double-click to zoom out
          {thinned ? '; long series thinned to ' + CHART_POINTS + ' points' : ''}
        </span>
      </div>
      <ProgressChart curves={curves} xLabel={withStep ? 'step' : 'time'} yLabel={chosen} time={!withStep} />
    </div>
  );
}

/** Results shown at a time: the server pages them (a job of 10,000 tasks is never sent whole). */
const RESULTS_WINDOW = 50;

function Results(props: { id: string; status: string }) {
  // The cursors of the windows before this one (Previous goes back one).
  const [cursors, setCursors] = useState<string[]>(['0']);
  const windowStart = cursors.at(-1)!;
  const results = useLoad(
    (signal) =>
      getJson<{ aggregate?: unknown; tasks?: Array<{ index: number; status: string; result: unknown }>; next_cursor?: string | null }>(
        `/api/v1/results/${enc(props.id)}${query({ limit: RESULTS_WINDOW, cursor: windowStart })}`,
        { signal },
      ),
    [props.id, props.status, windowStart],
  );
  if (results.error) return <Failure error={results.error} />;
  if (!results.data) return <p class="muted">Loading…</p>;
  const tasks = results.data.tasks ?? [];
  return (
    <div>
      {results.data.aggregate != null && (
        <>
          <h3>Aggregate</h3>
          <pre class="json">{JSON.stringify(results.data.aggregate, null, 2)}</pre>
        </>
      )}
      {tasks.length === 0 ? (
        <p class="empty">No results yet.</p>
      ) : (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th>#</th>
                <th>Status</th>
                <th>Result</th>
              </tr>
            </thead>
            <tbody>
              {tasks.map((t) => (
                <tr>
                  <td>{t.index}</td>
                  <td>
                    <Status status={t.status} />
                  </td>
                  <td class="mono">{short(t.result, 200)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {(cursors.length > 1 || results.data.next_cursor) && (
        <nav class="pager" aria-label="results pages">
          {cursors.length > 1 && <button onClick={() => setCursors(cursors.slice(0, -1))}>Previous results</button>}
          {results.data.next_cursor && <button onClick={() => setCursors([...cursors, results.data!.next_cursor!])}>Next results</button>}
        </nav>
      )}
    </div>
  );
}

const TEXT_PREVIEW = /\.(txt|log|json|jsonl|csv|tsv|md|yaml|yml|toml|py|sh|ini|cfg|out|err)$/i;
const IMAGE_PREVIEW = /\.(png|jpe?g|gif|webp|bmp)$/i;
const PREVIEW_BYTES = 256 * 1024;

function Artifacts(props: { list: Artifact[] | undefined; error?: string | undefined }) {
  const [preview, setPreview] = useState<{ id: string; text?: string; image?: string; error?: string } | undefined>(undefined);
  // Drawn 100 at a time (the server lists at most 1,000).
  const [shown, setShown] = useState(100);
  if (props.error) return <Failure error={props.error} />;
  if (!props.list) return <p class="muted">Loading…</p>;
  if (props.list.length === 0) return <p class="empty">No artifacts: a task keeps the files it writes under /artifacts.</p>;
  const show = async (artifact: Artifact) => {
    if (preview?.image) URL.revokeObjectURL(preview.image);
    setPreview({ id: artifact.id });
    try {
      const response = await fetch(`/api/v1/artifacts/${enc(artifact.id)}`, {
        credentials: 'same-origin',
        headers: IMAGE_PREVIEW.test(artifact.name) ? {} : { Range: `bytes=0-${PREVIEW_BYTES - 1}` },
      });
      if (!response.ok && response.status !== 206) throw new Error(`${response.status} ${response.statusText}`);
      if (IMAGE_PREVIEW.test(artifact.name)) {
        // Shown from a blob of the bytes, as an image only: never parsed as a page.
        setPreview({ id: artifact.id, image: URL.createObjectURL(await response.blob()) });
        return;
      }
      let text = await response.text();
      if (/\.json$/i.test(artifact.name) && artifact.size <= PREVIEW_BYTES) {
        try {
          text = JSON.stringify(JSON.parse(text), null, 2);
        } catch {
          // shown as it is
        }
      }
      setPreview({ id: artifact.id, text: artifact.size > PREVIEW_BYTES ? `${text}\n… (the first ${bytes(PREVIEW_BYTES)} of ${bytes(artifact.size)})` : text });
    } catch (error) {
      setPreview({ id: artifact.id, error: (error as Error).message });
    }
  };
  return (
    <div>
      <div class="table-wrap">
        <table class="artifacts">
          <thead>
            <tr>
              <th>Name</th>
              <th>Size</th>
              <th>Task</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {props.list.slice(0, shown).map((a) => (
              <tr key={a.id}>
                <td class="mono">{a.name}</td>
                <td>{bytes(a.size)}</td>
                <td class="mono">{a.task_id}</td>
                <td class="actions">
                  <a href={`/api/v1/artifacts/${enc(a.id)}`} download={a.name.split('/').pop()}>
                    Download
                  </a>
                  {(TEXT_PREVIEW.test(a.name) || IMAGE_PREVIEW.test(a.name)) && (
                    <button type="button" onClick={() => show(a)}>
                      Preview
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {props.list.length > shown && (
        <nav class="pager">
          <button type="button" onClick={() => setShown(shown + 100)}>
            Show more ({props.list.length - shown} not shown)
          </button>
        </nav>
      )}
      {preview && (
        <div class="preview">
          <Failure error={preview.error} />
          {preview.text !== undefined && <pre class="json">{preview.text}</pre>}
          {preview.image && <img src={preview.image} alt="artifact preview" />}
          <button type="button" onClick={() => setPreview(undefined)}>
            Close preview
          </button>
        </div>
      )}
    </div>
  );
}
