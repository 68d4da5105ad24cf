import { useState } from 'preact/hooks';
import { ApiFailure, change, enc, getJson, query } from './api.js';
import { ActionButton, bytes, DataTable, Failure, Pager, short, Status, useCursors, useLoad, when } from './util.js';

interface ProjectDetails {
  project?: string;
  revision?: number | null;
  ready_for_jobs?: boolean;
  build?: { state?: string; error?: string | null } | null;
  [key: string]: unknown;
}

export function ProjectsPage() {
  const list = useLoad(async (signal) => {
    const { projects } = await getJson<{ projects: Array<{ name: string; revision: number | null; created_at: string }> }>('/api/v1/projects', { signal });
    // One read per project, a few at a time would be kinder to a big server; projects are few here.
    const details = await Promise.all(
      projects.map((p) =>
        getJson<ProjectDetails>(`/api/v1/projects/${enc(p.name)}/status/details`, { signal }).catch((e: Error) => ({ error: e.message }) as ProjectDetails),
      ),
    );
    return projects.map((p, i) => ({ ...p, details: details[i]! }));
  }, []);
  return (
    <section>
      <h1>Projects</h1>
      <Failure error={list.error} />
      {list.data?.length === 0 && <p class="empty">No projects yet: push one with cycle project push.</p>}
      {list.data && list.data.length > 0 && (
        <DataTable
          rows={list.data}
          rowKey={(p) => p.name}
          columns={[
            { label: 'Project', cell: (p) => p.name },
            { label: 'Revision', cell: (p) => p.revision ?? '—' },
            { label: 'Ready', cell: (p) => (p.details.ready_for_jobs === undefined ? '—' : p.details.ready_for_jobs ? 'yes' : 'no') },
            {
              label: 'Build',
              cell: (p) => (
                <div>
                  {p.details.build?.state ? <Status status={p.details.build.state} /> : '—'}
                  {p.details.build?.error && <div class="failure">{p.details.build.error}</div>}
                  {typeof p.details.error === 'string' && <div class="failure">{p.details.error}</div>}
                </div>
              ),
            },
            { label: 'Created', cell: (p) => when(p.created_at) },
          ]}
        />
      )}
    </section>
  );
}

interface VolumeFile {
  path: string;
  size: number;
  sha256: string;
  executable?: boolean;
}

/** Files shown at a time: the server pages them (a volume may hold 200,000). */
const FILES_WINDOW = 100;

export function VolumesPage() {
  const list = useLoad(
    (signal) => getJson<{ volumes: Array<{ name: string; files: number; bytes: number; updated_at: string }> }>('/api/v1/volumes', { signal }),
    [],
  );
  const [open, setOpen] = useState<string | undefined>(undefined);
  const cursors = useCursors();
  const files = useLoad(
    async (signal) => {
      if (!open) return undefined;
      const cursor = cursors.cursor;
      const page = await getJson<{ files: VolumeFile[]; total?: number; next_cursor?: string | null }>(
        `/api/v1/volumes/${enc(open)}${query({ limit: FILES_WINDOW, cursor })}`,
        { signal },
      );
      // The position of the page shown, not of the one being fetched: the label and the rows change together.
      return { ...page, from: Number(cursor) };
    },
    [open, cursors.cursor],
  );
  const toggle = (name: string) => {
    setOpen(open === name ? undefined : name);
    cursors.reset();
  };
  return (
    <section>
      <h1>Volumes</h1>
      <Failure error={list.error} />
      {list.data?.volumes.length === 0 && <p class="empty">No volumes: upload one with cycle volume upload DIR --name NAME.</p>}
      {list.data && list.data.volumes.length > 0 && (
        <DataTable
          rows={list.data.volumes}
          rowKey={(v) => v.name}
          rowAttrs={(v) => ({ 'data-volume': v.name })}
          columns={[
            { label: 'Volume', cell: (v) => v.name },
            { label: 'Files', cell: (v) => v.files },
            { label: 'Size', cell: (v) => bytes(v.bytes) },
            { label: 'Updated', cell: (v) => when(v.updated_at) },
            {
              label: '',
              cell: (v) => (
                <button type="button" aria-expanded={open === v.name} onClick={() => toggle(v.name)}>
                  {open === v.name ? 'Hide files' : 'Files'}
                </button>
              ),
            },
          ]}
        />
      )}
      {open && (
        <>
          <h2>{open}</h2>
          <Failure error={files.error} />
          {files.data && (
            <>
              <p class="muted">
                {files.data.files.length === 0
                  ? 'No files.'
                  : `Files ${files.data.from + 1}–${files.data.from + files.data.files.length}${files.data.total !== undefined ? ` of ${files.data.total}` : ''}`}
              </p>
              <DataTable
                rows={files.data.files}
                rowKey={(f) => f.path}
                class="files"
                columns={[
                  { label: 'Path', class: 'mono', cell: (f) => `${f.path}${f.executable ? ' (executable)' : ''}` },
                  { label: 'Size', cell: (f) => bytes(f.size) },
                  { label: 'SHA-256', class: 'mono', cell: (f) => `${f.sha256.slice(0, 16)}…` },
                ]}
              />
              <Pager what="files" cursors={cursors} next={files.data.next_cursor} />
            </>
          )}
        </>
      )}
    </section>
  );
}

interface Machine {
  name: string;
  state: string;
  slots: number;
  draining?: boolean;
  running: Array<{ job_id: string; task_id: string; started_at: string | null }>;
  inventory: {
    cpus: number;
    memory_bytes: number;
    gpus: Array<{ index: number; name: string; memory_mib: number }>;
    driver?: string;
    cuda?: string;
    gpu_problem?: string;
  } | null;
  last_heartbeat_at: string | null;
}

export function MachinesPage() {
  const list = useLoad(async (signal) => {
    try {
      return await getJson<{ machines: Machine[] }>('/api/v1/machines', { signal });
    } catch (error) {
      if (error instanceof ApiFailure && error.status === 404) return { machines: [], noPool: true };
      throw error;
    }
  }, []);
  return (
    <section>
      <h1>Machines</h1>
      <Failure error={list.error} />
      {list.data && 'noPool' in list.data && <p class="empty">This server has no machine pool: its tasks run on its own machine.</p>}
      {list.data && !('noPool' in list.data) && list.data.machines.length === 0 && <p class="empty">No machines enrolled.</p>}
      {list.data && list.data.machines.length > 0 && (
        <DataTable
          rows={list.data.machines}
          rowKey={(m) => m.name}
          class="machines"
          rowAttrs={(m) => ({ 'data-machine': m.name })}
          columns={[
            { label: 'Machine', cell: (m) => m.name },
            {
              label: 'State',
              cell: (m) => (
                <div>
                  <Status status={m.state} />
                  {m.draining && m.state !== 'draining' && <div class="muted">draining</div>}
                </div>
              ),
            },
            {
              label: 'GPUs',
              cell: (m) => (
                <div>
                  {m.inventory?.gpus.length ? m.inventory.gpus.map((g) => `${g.name} (${bytes(g.memory_mib * 1024 * 1024)})`).join(', ') : 'none'}
                  {m.inventory?.gpu_problem && <div class="muted">{m.inventory.gpu_problem}</div>}
                </div>
              ),
            },
            { label: 'Driver / CUDA', cell: (m) => (m.inventory?.driver ? `${m.inventory.driver} / ${m.inventory.cuda ?? '—'}` : '—') },
            { label: 'CPUs / memory', cell: (m) => (m.inventory ? `${m.inventory.cpus} / ${bytes(m.inventory.memory_bytes)}` : '—') },
            {
              label: 'Running',
              cell: (m) => (
                <div>
                  {m.running.length}/{m.slots}
                  {m.running.map((r) => (
                    <div class="mono">
                      <a href={`/jobs/${enc(r.job_id)}`}>{short(r.job_id, 40)}</a>
                    </div>
                  ))}
                </div>
              ),
            },
            { label: 'Last heard', cell: (m) => when(m.last_heartbeat_at) },
            {
              label: '',
              // Drain: the machine finishes what it runs and takes nothing new; the session's cookie and CSRF value.
              cell: (m) => {
                const draining = m.draining ?? m.state === 'draining';
                return (
                  <ActionButton
                    label={draining ? 'Undrain' : 'Drain'}
                    busyLabel="…"
                    action={() => change(draining ? 'DELETE' : 'POST', `/api/v1/machines/${enc(m.name)}/drain`)}
                    onDone={list.reload}
                  />
                );
              },
            },
          ]}
        />
      )}
    </section>
  );
}

export function AccountPage() {
  const data = useLoad(async (signal) => {
    const [balance, holds, ledger] = await Promise.all([
      getJson<Record<string, unknown>>('/api/v1/account/balance', { signal }),
      getJson<{ holds: Array<Record<string, unknown>> }>('/api/v1/account/holds', { signal }),
      getJson<{ entries?: Array<Record<string, unknown>> }>('/api/v1/account/ledger', { signal }),
    ]);
    return { balance, holds: holds.holds, ledger: ledger.entries ?? [] };
  }, []);
  const usd = (value: unknown) => (typeof value === 'number' ? `$${value.toFixed(4)}` : value === null ? 'unlimited' : '—');
  return (
    <section>
      <h1>Account</h1>
      <Failure error={data.error} />
      {data.data && (
        <>
          <dl class="summary">
            <dt>Available</dt>
            <dd>{usd(data.data.balance.available_usd)}</dd>
            <dt>Held</dt>
            <dd>{usd(data.data.balance.held_usd)}</dd>
            <dt>Ledger balance</dt>
            <dd>{usd(data.data.balance.ledger_balance_usd)}</dd>
          </dl>
          <h2>Holds</h2>
          <Entries rows={data.data.holds.slice(0, 200)} empty="No holds." />
          <h2>Ledger</h2>
          <Entries rows={data.data.ledger.slice(0, 200)} empty="No ledger entries." />
        </>
      )}
    </section>
  );
}

/** A list of flat records (the server sends them newest first) as a table of their plain fields, at most 200. */
function Entries(props: { rows: Array<Record<string, unknown>>; empty: string }) {
  if (props.rows.length === 0) return <p class="empty">{props.empty}</p>;
  const keys = [...new Set(props.rows.flatMap((r) => Object.keys(r).filter((k) => r[k] === null || typeof r[k] !== 'object')))];
  return <DataTable rows={props.rows} columns={keys.map((k) => ({ label: k, cell: (r: Record<string, unknown>) => short(r[k], 60) }))} />;
}
