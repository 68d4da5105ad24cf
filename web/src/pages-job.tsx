import { useMemo, useRef, useState } from 'preact/hooks';
import { type Artifact, change, enc, getJson, type Job, type ProgressPage, query, type Task, TERMINAL } from './api.js';
import { type Curve, ProgressChart } from './chart.js';
import { type LogLine, LogView, textLines } from './log.js';
import { ActionButton, bytes, DataTable, duration, Failure, Pager, short, Status, Tags, useCursors, useEvents, useLoad, useThrottled, when } from './util.js';

/** Tasks per window of the tasks table (the server pages them). */
const TASK_WINDOW = 50;
/** Curves drawn at most: by default the window's first tasks, else the tasks the user ticked. */
const MAX_DRAWN = 20;
/** Points per task the chart asks for: the server thins each series to this many. */
const CHART_POINTS = 1000;
const LOG_TAIL = 256 * 1024;
/** Lines of the all-tasks log read from the server (the log shows at most as many). */
const ALL_LOG_LINES = 2000;

interface AllTasksLog {
  lines: Array<{ index: number; source: 'output' | 'system'; text: string }>;
  complete: boolean;
  last_event_id: string;
}

export function JobPage(props: { id: string }) {
  const id = props.id;
  const job = useLoad((signal) => getJson<Job>(`/api/v1/jobs/${enc(id)}`, { signal }), [id]);
  const taskCursors = useCursors();
  const [taskStatus, setTaskStatus] = useState('');
  const windowStart = taskCursors.cursor;
  const tasks = useLoad(
    (signal) =>
      getJson<{ tasks: Task[]; next_cursor: string | null }>(
        `/api/v1/jobs/${enc(id)}/tasks${query({ limit: TASK_WINDOW, cursor: windowStart, status: taskStatus })}`,
        { signal },
      ),
    [id, windowStart, taskStatus],
  );
  // The tasks drawn: undefined while the user has picked none (the window's first MAX_DRAWN), else those ticked.
  const [picked, setPicked] = useState<number[] | undefined>(undefined);
  const progress = useLoad(
    async (signal): Promise<ProgressPage> =>
      picked?.length === 0
        ? { fields: [], tasks: [], next_cursor: null }
        : getJson<ProgressPage>(
            `/api/v1/jobs/${enc(id)}/progress${query(picked ? { tasks: picked.join(','), max_points: CHART_POINTS } : { limit: MAX_DRAWN, cursor: windowStart, max_points: CHART_POINTS })}`,
            { signal },
          ),
    [id, windowStart, picked?.join(',')],
  );
  const drawn = picked ?? progress.data?.tasks.map((t) => t.index) ?? [];
  const toggleDrawn = (index: number) => setPicked(drawn.includes(index) ? drawn.filter((i) => i !== index) : [...drawn, index]);

  // The log: one task's (its log file's last LOG_TAIL bytes), or every task's newest lines, interleaved.
  const [logTask, setLogTask] = useState<number | 'all' | undefined>(undefined);
  const shownLogTask = logTask ?? tasks.data?.tasks[0]?.index ?? 0;
  const log = useLoad(
    async (signal): Promise<{ task: number; text: string } | { all: AllTasksLog }> =>
      shownLogTask === 'all'
        ? { all: await getJson<AllTasksLog>(`/api/v1/jobs/${enc(id)}/log${query({ lines: ALL_LOG_LINES })}`, { signal }) }
        : {
            task: shownLogTask,
            text:
              (
                await getJson<{ tasks: Array<{ index: number; output: string }> }>(
                  `/api/v1/jobs/${enc(id)}/output${query({ cursor: shownLogTask, limit: 1, tail: LOG_TAIL })}`,
                  { signal },
                )
              ).tasks[0]?.output ?? '',
          },
    [id, shownLogTask],
  );
  // Output heard on the job's stream since the log was read: each chunk with its event's number.
  const [live, setLive] = useState<Array<{ id: number; index: number; text: string }>>([]);
  const artifacts = useLoad((signal) => getJson<{ artifacts: Artifact[] }>(`/api/v1/artifacts${query({ job: id, limit: 1000 })}`, { signal }), [id]);

  const reloadJob = useThrottled(job.reload, 300);
  const reloadTasks = useThrottled(tasks.reload, 500);
  const reloadProgress = useThrottled(progress.reload, 1000);
  const reloadArtifacts = useThrottled(artifacts.reload, 1000);
  const reloadLog = useThrottled(log.reload, 1000);
  // The job's stream from the job's latest event: everything after the first read, live.
  const since = useRef<string | undefined>(undefined);
  if (since.current === undefined && job.data?.last_event_id) since.current = job.data.last_event_id;
  useEvents(
    since.current && !TERMINAL.has(job.data?.status ?? '') ? `/api/v1/jobs/${enc(id)}/stream?last_event_id=${enc(since.current)}` : undefined,
    (type, event, eventId) => {
      const data = (event as { data?: { index?: number; text?: string } }).data ?? {};
      if (type === 'job') reloadJob();
      if (type === 'task') {
        reloadJob();
        reloadTasks();
        // Its system line (started, succeeded, failed) is in the log as the server wrote it.
        if (shownLogTask === 'all' || data.index === shownLogTask) reloadLog();
      }
      if (type === 'progress') reloadProgress();
      if (type === 'artifact') reloadArtifacts();
      if (type === 'output' && typeof data.index === 'number' && typeof data.text === 'string' && (shownLogTask === 'all' || data.index === shownLogTask))
        // The newest chunks only: the log shows at most its last 2,000 lines.
        setLive((chunks) => [...chunks.slice(-ALL_LOG_LINES), { id: eventId, index: data.index!, text: data.text! }]);
    },
    ['job', 'task', 'progress', 'output', 'artifact'],
  );
  const logLines = useMemo(() => linesOf(log.data, live, shownLogTask), [log.data, live, shownLogTask]);
  // A reload of the log holds everything the live chunks had (for one task: all of them; for all tasks: those up to its last_event_id).
  const [lastLog, setLastLog] = useState(log.data);
  if (lastLog !== log.data) {
    setLastLog(log.data);
    const after = log.data && 'all' in log.data ? Number(log.data.all.last_event_id) : Number.POSITIVE_INFINITY;
    setLive((chunks) => chunks.filter((chunk) => chunk.id > after));
  }

  if (job.error) return <Failure error={job.error} />;
  if (!job.data) return <p class="muted">Loading {id}…</p>;
  const j = job.data;
  const logName = shownLogTask === 'all' ? 'all tasks' : `task ${shownLogTask}`;
  return (
    <section class="job">
      <header class="job-head">
        <h1 class="mono">{j.id}</h1>
        <Status status={j.status} />
        {!TERMINAL.has(j.status) && (
          <ActionButton
            label="Cancel job"
            busyLabel="Cancelling…"
            class="danger"
            action={() => change('PUT', `/api/v1/jobs/${enc(j.id)}/cancel`)}
            onDone={job.reload}
          />
        )}
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
        <dd>
          <Tags tags={j.tags} />
        </dd>
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
      <Progress page={progress.data} tasks={tasks.data?.tasks ?? []} error={progress.error} picked={picked !== undefined} />
      {picked !== undefined && (
        <nav class="pager">
          <button type="button" onClick={() => setPicked(undefined)}>
            Draw this window's first {MAX_DRAWN}
          </button>
        </nav>
      )}

      <h2>Tasks</h2>
      <div class="filters">
        <label>
          Status
          <select value={taskStatus} onChange={(event) => (setTaskStatus(event.currentTarget.value), taskCursors.reset())}>
            {['', 'queued', 'running', 'succeeded', 'failed', 'cancelled'].map((s) => (
              <option value={s}>{s || 'any'}</option>
            ))}
          </select>
        </label>
        <span class="muted">
          {drawn.length} of at most {MAX_DRAWN} drawn: tick Chart to choose
        </span>
        {drawn.length > 0 && (
          <button type="button" onClick={() => setPicked([])}>
            Draw none
          </button>
        )}
      </div>
      <Failure error={tasks.error} />
      <DataTable
        rows={tasks.data?.tasks ?? []}
        rowKey={(t) => t.id}
        class="tasks"
        rowAttrs={(t) => ({ class: t.index === shownLogTask ? 'selected' : '', 'data-task': String(t.index) })}
        columns={[
          { label: '#', cell: (t) => t.index },
          { label: 'Status', cell: (t) => <Status status={t.status} /> },
          { label: 'Item', class: 'mono', cell: taskLabel },
          { label: 'Attempts', cell: (t) => t.attempt },
          { label: 'Exit', cell: (t) => t.exit_code ?? '—' },
          { label: 'Duration', cell: (t) => (t.duration_s != null ? `${t.duration_s.toFixed(1)} s` : duration(t.started_at, t.finished_at)) },
          { label: 'Latest progress', class: 'mono', cell: (t) => short(t.latest_progress, 60) },
          {
            label: 'Chart',
            cell: (t) => (
              <input
                type="checkbox"
                aria-label={`draw task ${t.index}`}
                checked={drawn.includes(t.index)}
                disabled={!drawn.includes(t.index) && drawn.length >= MAX_DRAWN}
                onChange={() => toggleDrawn(t.index)}
              />
            ),
          },
          {
            label: 'Log',
            cell: (t) => (
              <button type="button" onClick={() => setLogTask(t.index)} aria-pressed={t.index === shownLogTask}>
                Log
              </button>
            ),
          },
        ]}
      />
      <Pager what="tasks" cursors={taskCursors} next={tasks.data?.next_cursor} />

      <h2>Log of {logName}</h2>
      <div class="filters">
        <button type="button" aria-pressed={shownLogTask === 'all'} onClick={() => setLogTask(shownLogTask === 'all' ? undefined : 'all')}>
          {shownLogTask === 'all' ? 'One task' : 'All tasks'}
        </button>
        {log.data && 'all' in log.data && !log.data.all.complete && <span class="muted">the newest {ALL_LOG_LINES} lines</span>}
      </div>
      <Failure error={log.error} />
      <LogView lines={logLines} label={`log of ${logName}`} />

      <h2>Results</h2>
      <Results id={id} status={j.status} />

      <h2>Artifacts</h2>
      <Artifacts list={artifacts.data?.artifacts} error={artifacts.error} />
    </section>
  );
}

/** The log's lines: as read, then the live chunks heard since (for all tasks, those after what the read held; each line with its task). */
function linesOf(
  read: { task: number; text: string } | { all: AllTasksLog } | undefined,
  live: Array<{ id: number; index: number; text: string }>,
  shown: number | 'all',
): LogLine[] {
  if (!read) return [];
  if ('task' in read) {
    if (read.task !== shown) return [];
    const text = read.text + live.map((chunk) => chunk.text).join('');
    // A log's last line ends with a newline: no empty line is shown (or counted) after it, nor for an empty log.
    return text === '' ? [] : textLines(text.endsWith('\n') ? text.slice(0, -1) : text);
  }
  if (shown !== 'all') return [];
  const lines: LogLine[] = read.all.lines.map((line) => ({ task: line.index, text: line.text, system: line.source === 'system' }));
  const after = Number(read.all.last_event_id);
  // A chunk may end inside a line: the rest of it comes with the task's next chunk.
  const unfinished = new Map<number, string>();
  for (const chunk of live) {
    if (chunk.id <= after) continue;
    const parts = ((unfinished.get(chunk.index) ?? '') + chunk.text).split('\n');
    unfinished.set(chunk.index, parts.pop()!);
    for (const text of parts) lines.push(...textLines(text, chunk.index));
  }
  for (const [task, text] of unfinished) if (text) lines.push(...textLines(text, task));
  return lines;
}

/** What tells a task apart in a sweep or fan-out: its payload (a fan-out item, a sweep's point), without the `_` directives. */
function taskLabel(task: Task): string {
  const payload = task.payload;
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return short(payload, 60);
  return short(Object.fromEntries(Object.entries(payload).filter(([key]) => !key.startsWith('_'))), 60);
}

function Progress(props: { page: ProgressPage | undefined; tasks: Task[]; error?: string | undefined; picked: boolean }) {
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
  if (props.picked && page.tasks.length === 0) return <p class="empty">No task ticked: tick Chart in the tasks table to draw a task.</p>;
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
          {props.picked ? `${curves.length} ticked` : `this window's first ${curves.length}`} task{curves.length === 1 ? '' : 's'}; drag to zoom, double-click
          to zoom out
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
  const cursors = useCursors();
  const results = useLoad(
    (signal) =>
      getJson<{ aggregate?: unknown; tasks?: Array<{ index: number; status: string; result: unknown }>; next_cursor?: string | null }>(
        `/api/v1/results/${enc(props.id)}${query({ limit: RESULTS_WINDOW, cursor: cursors.cursor })}`,
        { signal },
      ),
    [props.id, props.status, cursors.cursor],
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
        <DataTable
          rows={tasks}
          rowKey={(t) => t.index}
          class="results"
          rowAttrs={(t) => ({ 'data-result': String(t.index) })}
          columns={[
            { label: '#', cell: (t) => t.index },
            { label: 'Status', cell: (t) => <Status status={t.status} /> },
            { label: 'Result', class: 'mono', cell: (t) => short(t.result, 200) },
          ]}
        />
      )}
      <Pager what="results" cursors={cursors} next={results.data.next_cursor} />
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
      <DataTable
        rows={props.list.slice(0, shown)}
        rowKey={(a) => a.id}
        class="artifacts"
        columns={[
          { label: 'Name', class: 'mono', cell: (a) => a.name },
          { label: 'Size', cell: (a) => bytes(a.size) },
          { label: 'Task', class: 'mono', cell: (a) => a.task_id },
          {
            label: '',
            class: 'actions',
            cell: (a) => (
              <>
                <a href={`/api/v1/artifacts/${enc(a.id)}`} download={a.name.split('/').pop()}>
                  Download
                </a>
                {(TEXT_PREVIEW.test(a.name) || IMAGE_PREVIEW.test(a.name)) && (
                  <button type="button" onClick={() => show(a)}>
                    Preview
                  </button>
                )}
              </>
            ),
          },
        ]}
      />
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
