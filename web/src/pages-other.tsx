import { useState } from 'preact/hooks';
import { ApiFailure, change, enc, getJson } from './api.js';
import { bytes, Failure, short, Status, useLoad, when } from './util.js';

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
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th>Project</th>
                <th>Revision</th>
                <th>Ready</th>
                <th>Build</th>
                <th>Created</th>
              </tr>
            </thead>
            <tbody>
              {list.data.map((p) => (
                <tr>
                  <td>{p.name}</td>
                  <td>{p.revision ?? '—'}</td>
                  <td>{p.details.ready_for_jobs === undefined ? '—' : p.details.ready_for_jobs ? 'yes' : 'no'}</td>
                  <td>
                    {p.details.build?.state ? <Status status={p.details.build.state} /> : '—'}
                    {p.details.build?.error && <div class="failure">{p.details.build.error}</div>}
                    {typeof p.details.error === 'string' && <div class="failure">{p.details.error}</div>}
                  </td>
                  <td>{when(p.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

export function VolumesPage() {
  const list = useLoad(
    (signal) => getJson<{ volumes: Array<{ name: string; files: number; bytes: number; updated_at: string }> }>('/api/v1/volumes', { signal }),
    [],
  );
  const [open, setOpen] = useState<string | undefined>(undefined);
  const files = useLoad(
    async (signal) =>
      open
        ? getJson<{ files: Array<{ path: string; size: number; sha256: string; executable?: boolean }> }>(`/api/v1/volumes/${enc(open)}`, { signal })
        : undefined,
    [open],
  );
  return (
    <section>
      <h1>Volumes</h1>
      <Failure error={list.error} />
      {list.data?.volumes.length === 0 && <p class="empty">No volumes: upload one with cycle volume upload DIR --name NAME.</p>}
      {list.data && list.data.volumes.length > 0 && (
        <div class="table-wrap">
          <table>
            <thead>
              <tr>
                <th>Volume</th>
                <th>Files</th>
                <th>Size</th>
                <th>Updated</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {list.data.volumes.map((v) => (
                <tr>
                  <td>{v.name}</td>
                  <td>{v.files}</td>
                  <td>{bytes(v.bytes)}</td>
                  <td>{when(v.updated_at)}</td>
                  <td>
                    <button type="button" aria-expanded={open === v.name} onClick={() => setOpen(open === v.name ? undefined : v.name)}>
                      {open === v.name ? 'Hide files' : 'Files'}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {open && files.data && (
        <>
          <h2>{open}</h2>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th>Path</th>
                  <th>Size</th>
                  <th>SHA-256</th>
                </tr>
              </thead>
              <tbody>
                {files.data.files.slice(0, 500).map((f) => (
                  <tr>
                    <td class="mono">
                      {f.path}
                      {f.executable ? ' (executable)' : ''}
                    </td>
                    <td>{bytes(f.size)}</td>
                    <td class="mono">{f.sha256.slice(0, 16)}…</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          {files.data.files.length > 500 && <p class="muted">The first 500 of {files.data.files.length} files.</p>}
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
        <div class="table-wrap">
          <table class="machines">
            <thead>
              <tr>
                <th>Machine</th>
                <th>State</th>
                <th>GPUs</th>
                <th>Driver / CUDA</th>
                <th>CPUs / memory</th>
                <th>Running</th>
                <th>Last heard</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {list.data.machines.map((m) => (
                <tr data-machine={m.name}>
                  <td>{m.name}</td>
                  <td>
                    <Status status={m.state} />
                    {m.draining && m.state !== 'draining' && <div class="muted">draining</div>}
                  </td>
                  <td>
                    {m.inventory?.gpus.length ? m.inventory.gpus.map((g) => `${g.name} (${bytes(g.memory_mib * 1024 * 1024)})`).join(', ') : 'none'}
                    {m.inventory?.gpu_problem && <div class="muted">{m.inventory.gpu_problem}</div>}
                  </td>
                  <td>{m.inventory?.driver ? `${m.inventory.driver} / ${m.inventory.cuda ?? '—'}` : '—'}</td>
                  <td>{m.inventory ? `${m.inventory.cpus} / ${bytes(m.inventory.memory_bytes)}` : '—'}</td>
                  <td>
                    {m.running.length}/{m.slots}
                    {m.running.map((r) => (
                      <div class="mono">
                        <a href={`/jobs/${enc(r.job_id)}`}>{short(r.job_id, 40)}</a>
                      </div>
                    ))}
                  </td>
                  <td>{when(m.last_heartbeat_at)}</td>
                  <td>
                    <DrainButton name={m.name} draining={m.draining ?? m.state === 'draining'} onDone={list.reload} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** Drain (the machine finishes what it runs and takes nothing new) or undrain: the session's cookie and CSRF value. */
function DrainButton(props: { name: string; draining: boolean; onDone: () => void }) {
  const [state, setState] = useState<{ busy: boolean; error?: string }>({ busy: false });
  return (
    <span>
      <button
        type="button"
        disabled={state.busy}
        onClick={async () => {
          setState({ busy: true });
          try {
            await change(props.draining ? 'DELETE' : 'POST', `/api/v1/machines/${enc(props.name)}/drain`);
            setState({ busy: false });
            props.onDone();
          } catch (error) {
            setState({ busy: false, error: (error as Error).message });
          }
        }}
      >
        {state.busy ? '…' : props.draining ? 'Undrain' : 'Drain'}
      </button>
      <Failure error={state.error} />
    </span>
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
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            {keys.map((k) => (
              <th>{k}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {props.rows.map((r) => (
            <tr>
              {keys.map((k) => (
                <td>{short(r[k], 60)}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
