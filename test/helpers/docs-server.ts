import { createHash } from 'node:crypto';
import http from 'node:http';

/**
 * A fake Computalot server that answers only with what the public docs show (platform-facts.md
 * B): documented fields and none of ours, `job_id` instead of `id`, extra fields cycle does not
 * know, a status word cycle does not know (`provisioning`) before the documented terminal one,
 * no event stream (404) and no `/output` route. Where the docs show no body (push, init,
 * invalidate, status details, kv, batch, the artifact list, cancel), it answers with a few
 * plausible fields, extra ones, and none of the fields `cycle server` sends. Every request is
 * recorded.
 *
 * Fixed names: project `demo` exists (its status says `warming` and not ready for
 * `provisioningPolls` asks), `legacy` has a status without readiness or build; other projects exist once created (`POST /api/v1/projects`) and
 * have a status once pushed. Job `job_docs_ok` has one artifact (`result.txt`), `job_docs_noid`
 * lists one without an id; kv key `no-value` answers without a value; a batch entry for
 * project `nope` is refused; cancelling `job_docs_fail` answers 204, no body; a submission with
 * `meta.outcome` `fail` makes `job_docs_fail`, `broke` a 402, `bare` an answer of the id alone.
 */
export interface DocsServer {
  url: string;
  token: string;
  requests: string[];
  /** The JSON bodies of recipe submissions and project creations, in order. */
  bodies: unknown[];
  /** The kv values stored (`PUT .../kv/:key`), by `project/key`. */
  kv: Map<string, unknown>;
  /** How many GETs of a job (or of a project's status) answer `provisioning` (`warming`) first. */
  provisioningPolls: number;
  /** Every job starts again at `provisioning`. */
  resetPolls(): void;
  close(): Promise<void>;
}

const EXTRA = { x_unknown_field: { kept: true }, summary: 'made by a fake server' };

export async function startDocsServer(): Promise<DocsServer> {
  const token = 'flk_docs_test';
  const polls = new Map<string, number>();
  /** Uploaded artifacts by sha256. */
  const stored = new Map<string, number>();
  /** Projects made with POST /api/v1/projects, and those pushed (with their push count). */
  const created = new Set<string>(['demo', 'legacy']);
  const pushed = new Map<string, number>([
    ['demo', 3],
    ['legacy', 1],
  ]);
  const state: DocsServer = {
    url: '',
    token,
    requests: [],
    bodies: [],
    kv: new Map(),
    provisioningPolls: 2,
    resetPolls: () => polls.clear(),
    close: async () => undefined,
  };
  /** The one artifact of `job_docs_ok` (listed with `artifact_id` and `filename`, as uploads name them). */
  const resultBytes = Buffer.from('score,0.5\n');
  const resultArtifact = {
    artifact_id: 'art_docs_result',
    job_id: 'job_docs_ok',
    filename: 'result.txt',
    size: resultBytes.length,
    sha256: createHash('sha256').update(resultBytes).digest('hex'),
    ...EXTRA,
  };
  const finalStatus = (id: string): string => (id.includes('fail') ? 'failed' : 'completed');
  const job = (id: string): Record<string, unknown> => {
    const seen = polls.get(id) ?? 0;
    const status = seen < state.provisioningPolls ? 'provisioning' : finalStatus(id);
    const failed = status === 'failed';
    return {
      job_id: id,
      status,
      ...(failed ? { error: 'the runner exited with code 1', recommended_action: 'fix the payload field `seed` and resubmit' } : {}),
      ...EXTRA,
    };
  };
  const tasks = (id: string) => [
    {
      task_id: `${id}_t0`,
      status: id.includes('fail') ? 'failed' : 'succeeded',
      error: id.includes('fail') ? 'exit code 1' : null,
      output: 'hello from the task\n',
      exit_code: id.includes('fail') ? 1 : 0,
      latest_progress: null,
      live_feedback: { output_tail: 'hello from the task' },
      result_quality: 1,
    },
  ];
  const projectStatus = (name: string): Record<string, unknown> => {
    const seen = polls.get(`project:${name}`) ?? 0;
    polls.set(`project:${name}`, seen + 1);
    const ready = seen >= state.provisioningPolls;
    // The docs name can_accept_new_jobs, ready_for_jobs and the revision; no build state, no hashes.
    return { project: name, revision: pushed.get(name), can_accept_new_jobs: true, ready_for_jobs: ready, status: ready ? 'ready' : 'warming', ...EXTRA };
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    state.requests.push(`${req.method} ${url.pathname}`);
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.headers.authorization !== `Bearer ${token}`) return send(401, { detail: 'unauthorized' });
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const path = url.pathname;
      let match: RegExpMatchArray | null;
      if (req.method === 'POST' && path === '/api/v1/jobs') {
        const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
        const meta = typeof body === 'object' && body !== null ? Reflect.get(body, 'meta') : undefined;
        const id = typeof meta === 'object' && meta !== null && Reflect.get(meta, 'outcome') === 'fail' ? 'job_docs_fail' : 'job_docs_ok';
        if (typeof meta === 'object' && meta !== null && Reflect.get(meta, 'outcome') === 'broke') {
          // A shortfall quote; its exact shape is not documented.
          return send(402, { detail: 'insufficient funds', quote: { estimated_cost_usd: '12.50', available_usd: '2.00', shortfall_usd: '10.50' } });
        }
        polls.set(id, 0);
        // The submit answer is not documented: `outcome=bare` gets the id alone, no status.
        if (typeof meta === 'object' && meta !== null && Reflect.get(meta, 'outcome') === 'bare') return send(200, { job_id: id });
        return send(200, { job_id: id, status: 'queued', hold_usd: 0.25, ...EXTRA });
      }
      if (req.method === 'GET' && path === '/api/v1/jobs') return send(200, { jobs: [job('job_docs_ok'), job('job_docs_fail')] });
      if ((match = path.match(/^\/api\/v1\/jobs\/([^/]+)$/)) && req.method === 'GET') {
        const id = decodeURIComponent(match[1] ?? '');
        if (!id.startsWith('job_docs_')) return send(404, { detail: 'Job not found' });
        const answer = job(id);
        polls.set(id, (polls.get(id) ?? 0) + 1);
        return send(200, answer);
      }
      if ((match = path.match(/^\/api\/v1\/jobs\/([^/]+)\/tasks$/))) return send(200, { tasks: tasks(decodeURIComponent(match[1] ?? '')), ...EXTRA });
      if ((match = path.match(/^\/api\/v1\/jobs\/([^/]+)\/cancel$/))) {
        const id = decodeURIComponent(match[1] ?? '');
        if (id === 'job_docs_fail') {
          res.writeHead(204);
          return res.end();
        }
        return send(200, { job_id: id, status: 'cancelling', ...EXTRA });
      }
      if ((match = path.match(/^\/api\/v1\/results\/([^/]+)$/))) {
        const id = decodeURIComponent(match[1] ?? '');
        return send(200, {
          job_id: id,
          status: finalStatus(id),
          summary: { succeeded: 1 },
          aggregate_result: { mean: 0.5 },
          aggregate_aliases: {},
          completeness: 1,
          result_persisted: true,
          output_persisted: true,
          meta: {},
          variant: null,
          tasks: tasks(id).map((t) => ({ task_id: t.task_id, status: t.status, result: { score: 0.5 }, result_quality: 1, result_warnings: [] })),
        });
      }
      if (req.method === 'GET' && path === '/api/v1/recipes')
        return send(200, { recipes: [{ name: 'simple-amm', description: 'an AMM simulation', price_hint: '$0.01/min' }] });
      if (req.method === 'GET' && path === '/api/v1/recipes/simple-amm')
        return send(200, {
          name: 'simple-amm',
          description: 'an AMM simulation',
          schema: { type: 'object', properties: { steps: { type: 'integer' } } },
          operations: ['simulate'],
        });
      if (req.method === 'POST' && path === '/api/v1/recipes/simple-amm/jobs') {
        const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
        state.bodies.push(body);
        polls.set('job_docs_ok', 0);
        return send(200, { job_id: 'job_docs_ok', status: 'queued', ...EXTRA });
      }
      if (req.method === 'GET' && path === '/api/v1/account/balance')
        return send(200, { ledger_balance_usd: 20, held_usd: '2.5', available_usd: 17.5, currency: 'USD' });
      if (req.method === 'GET' && path === '/api/v1/account/holds') return send(200, { holds: [{ job_id: 'job_docs_ok', amount_usd: 2.5, detail: { a: 1 } }] });
      if (req.method === 'GET' && path === '/api/v1/account/ledger') return send(200, [{ at: '2026-12-01T00:00:00Z', amount_usd: 20, kind: 'deposit' }]);
      if (req.method === 'POST' && path === '/api/v1/projects') {
        const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
        state.bodies.push(body);
        const name = typeof body === 'object' && body !== null ? Reflect.get(body, 'name') : undefined;
        if (typeof name === 'string') created.add(name);
        return send(201, { name, remote_dir: `/projects/${String(name)}`, created: true });
      }
      if (req.method === 'POST' && path === '/api/v1/artifacts/direct') {
        const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
        const sha256 = typeof body === 'object' && body !== null ? String(Reflect.get(body, 'sha256')) : '';
        if (stored.has(sha256)) return send(200, { artifact_id: `art_${sha256.slice(0, 16)}`, exists: true });
        return send(200, { exists: false, upload_url: 'https://storage.invalid/upload/abc', expires_in_s: 900 });
      }
      if (req.method === 'POST' && path === '/api/v1/artifacts') {
        const bytes = Buffer.concat(chunks);
        const sha256 = createHash('sha256').update(bytes).digest('hex');
        stored.set(sha256, bytes.length);
        return send(201, { artifact_id: `art_${sha256.slice(0, 16)}`, size: bytes.length, filename: req.headers['x-artifact-filename'] });
      }
      if ((match = path.match(/^\/api\/v1\/projects\/([^/]+)\/(push|init|invalidate|status|status\/details|kv|kv\/([^/]+))$/))) {
        const name = decodeURIComponent(match[1] ?? '');
        const route = match[2] ?? '';
        if (!created.has(name)) return send(404, { detail: 'Project not found' });
        if (req.method === 'POST' && route === 'push') {
          const revision = (pushed.get(name) ?? 0) + 1;
          pushed.set(name, revision);
          return send(200, { project: name, revision, status: 'published', ...EXTRA });
        }
        if (!pushed.has(name)) return send(404, { detail: 'Project has no published revision' });
        if (req.method === 'POST' && route === 'init') return send(202, { project: name, status: 'initializing', ...EXTRA });
        if (req.method === 'POST' && route === 'invalidate') return send(200, { ok: true, ...EXTRA });
        // `legacy`: a status that says neither its build state nor whether it is ready.
        if (req.method === 'GET' && route === 'status' && name === 'legacy') return send(200, { project: name, revision: 1, ...EXTRA });
        if (req.method === 'GET' && route === 'status') return send(200, projectStatus(name));
        if (req.method === 'GET' && route === 'status/details')
          return send(200, { ...projectStatus(name), nodes: [{ node: 'gpu-node-1', state: 'warming', ready: false, x_node_field: 1 }] });
        if (req.method === 'GET' && route === 'kv')
          // A bare list, keys only for values that are not shared.
          return send(
            200,
            [...state.kv.entries()].filter(([k]) => k.startsWith(`${name}/`)).map(([k, value]) => ({ key: k.slice(name.length + 1), value, ...EXTRA })),
          );
        const key = decodeURIComponent(match[3] ?? '');
        if (req.method === 'PUT') {
          const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
          state.kv.set(`${name}/${key}`, typeof body === 'object' && body !== null ? Reflect.get(body, 'value') : undefined);
          return send(200, { key, stored: true, ...EXTRA });
        }
        if (req.method === 'GET' && key === 'no-value') return send(200, { key, ...EXTRA });
        if (req.method === 'GET' && state.kv.has(`${name}/${key}`)) return send(200, { key, value: state.kv.get(`${name}/${key}`), version: 1, ...EXTRA });
        return send(404, { detail: [{ loc: ['path', 'key'], msg: `no key ${key}`, type: 'not_found' }] });
      }
      if (req.method === 'POST' && path === '/api/v1/jobs/batch') {
        const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
        const jobs: unknown = typeof body === 'object' && body !== null ? Reflect.get(body, 'jobs') : undefined;
        // One entry per job, in order: no `index`, no `ok`; a refused one has an `error`.
        const entries = (Array.isArray(jobs) ? jobs : []).map((job: unknown, n) =>
          typeof job === 'object' && job !== null && Reflect.get(job, 'project') === 'nope'
            ? { error: { message: 'project nope does not exist' } }
            : { job_id: `job_docs_batch${n}`, status: 'provisioning', ...EXTRA },
        );
        return send(200, { jobs: entries, ...EXTRA });
      }
      if (req.method === 'GET' && path === '/api/v1/artifacts') {
        const job = url.searchParams.get('job');
        if (job === 'job_docs_noid') return send(200, { artifacts: [{ filename: 'orphan.txt', size: 1 }] });
        return send(200, { artifacts: job === null || job === 'job_docs_ok' ? [resultArtifact] : [], ...EXTRA });
      }
      if (req.method === 'GET' && path === `/api/v1/artifacts/${resultArtifact.artifact_id}`) {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(resultBytes.length) });
        return res.end(resultBytes);
      }
      // No SSE routes, no /output: what the docs do not show, this server does not have.
      return send(404, { detail: 'Not Found' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  state.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  state.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return state;
}
