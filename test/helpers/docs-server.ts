import { createHash } from 'node:crypto';
import http from 'node:http';

/**
 * A fake Computalot server that answers only with what the public docs show (platform-facts.md
 * B): documented fields and none of ours, `job_id` instead of `id`, extra fields cycle does not
 * know, a status word cycle does not know (`provisioning`) before the documented terminal one,
 * no event stream (404) and no `/output` route. Every request is recorded.
 */
export interface DocsServer {
  url: string;
  token: string;
  requests: string[];
  /** The JSON bodies of recipe submissions and project creations, in order. */
  bodies: unknown[];
  /** How many GETs of a job answer `provisioning` before its final status. */
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
  const state: DocsServer = { url: '', token, requests: [], bodies: [], provisioningPolls: 2, resetPolls: () => polls.clear(), close: async () => undefined };
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
      if ((match = path.match(/^\/api\/v1\/jobs\/([^/]+)\/cancel$/)))
        return send(200, { job_id: decodeURIComponent(match[1] ?? ''), status: 'cancelling', ...EXTRA });
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
        state.bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
        return send(201, { name: 'demo', remote_dir: '/projects/demo', created: true });
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
