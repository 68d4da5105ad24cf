import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../src/cli.js';
import { createContext } from '../../src/context.js';
import fs from 'node:fs/promises';
import http from 'node:http';
import { ApiClient } from '../../src/api/client.js';
import { Capture, cycleswapProject, fixedClock, tempDir } from '../helpers/context.js';
import { startDocsServer, type DocsServer } from '../helpers/docs-server.js';

let docs: DocsServer;
let cwd: string;
beforeAll(async () => {
  docs = await startDocsServer();
  cwd = await tempDir();
});
afterAll(async () => docs.close());
beforeEach(() => {
  docs.requests.length = 0;
  docs.resetPolls();
});

/** Runs cycle against the docs-only server, with a clock whose sleeps take no time. */
async function cycle(args: string[], where: { cwd?: string; apiUrl?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new Capture();
  const stderr = new Capture();
  const stdin = new PassThrough();
  stdin.end('');
  const io = { stdout, stderr, stdin };
  const env = {
    HOME: cwd,
    XDG_CONFIG_HOME: path.join(cwd, '.cfg'),
    NO_COLOR: '1',
    CYCLE_API_URL: where.apiUrl ?? docs.url,
    CYCLE_TOKEN: docs.token,
    CYCLE_HTTP_RETRIES: '1',
  };
  const dir = where.cwd ?? cwd;
  const code = await main(['node', 'cycle', ...args], {
    io,
    env,
    cwd: dir,
    handleSignals: false,
    contextFactory: async (global, signal) => createContext({ io, env, cwd: dir, global, version: 'test', signal, clock: fixedClock() }),
  });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

const noShapeFailure = (result: { code: number; stderr: string }): void => {
  expect(result.stderr).not.toMatch(/does not understand|expected shape/);
  expect(result.code, result.stderr).not.toBe(5);
};

describe('a server that answers only with what the docs show', () => {
  it('job list and job list --json: job_id names the job, unknown fields are kept', async () => {
    const text = await cycle(['job', 'list']);
    noShapeFailure(text);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^job_docs_ok\t(provisioning|completed)\t/m);
    const json = await cycle(['job', 'list', '--json']);
    expect(json.code).toBe(0);
    const jobs: unknown = JSON.parse(json.stdout);
    expect(jobs).toEqual([
      expect.objectContaining({ job_id: 'job_docs_ok', x_unknown_field: { kept: true }, summary: 'made by a fake server' }),
      expect.objectContaining({ job_id: 'job_docs_fail' }),
    ]);
  });

  it('job get shows an unknown status as it is, and --json prints the document unchanged', async () => {
    docs.provisioningPolls = 100;
    try {
      const text = await cycle(['job', 'get', 'job_docs_ok']);
      noShapeFailure(text);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(/^status\s+provisioning$/m);
      const json = await cycle(['job', 'get', 'job_docs_ok', '--json']);
      expect(JSON.parse(json.stdout)).toEqual({
        job_id: 'job_docs_ok',
        status: 'provisioning',
        x_unknown_field: { kept: true },
        summary: 'made by a fake server',
      });
    } finally {
      docs.provisioningPolls = 2;
    }
  });

  it('job get shows recommended_action', async () => {
    docs.provisioningPolls = 0;
    try {
      const result = await cycle(['job', 'get', 'job_docs_fail']);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toMatch(/^status\s+failed \(the runner exited with code 1\)$/m);
      expect(result.stdout).toMatch(/fix the payload field `seed` and resubmit/);
    } finally {
      docs.provisioningPolls = 2;
    }
  });

  it('job tasks, job results and job logs read the documented fields', async () => {
    const tasks = await cycle(['job', 'tasks', 'job_docs_ok']);
    noShapeFailure(tasks);
    expect(tasks.stdout).toMatch(/job_docs_ok_t0\s+succeeded/);
    const results = await cycle(['job', 'results', 'job_docs_ok']);
    noShapeFailure(results);
    expect(results.stdout).toMatch(/^0\tsucceeded\t\{"score":0\.5\}$/m);
    expect(results.stdout).toMatch(/^aggregate\t\{"mean":0\.5\}$/m);
    const resultsJson = await cycle(['job', 'results', 'job_docs_ok', '--json']);
    expect(JSON.parse(resultsJson.stdout)).toMatchObject({ completeness: 1, result_persisted: true, tasks: [{ result_quality: 1, result_warnings: [] }] });
    const logs = await cycle(['job', 'logs', 'job_docs_ok']);
    noShapeFailure(logs);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toBe('hello from the task\n');
  });

  it('job logs --follow and job watch poll the job when the server has no stream, through an unknown status', async () => {
    const logs = await cycle(['job', 'logs', 'job_docs_ok', '--follow']);
    noShapeFailure(logs);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toBe('hello from the task\n');
    expect(docs.requests).toContain('GET /api/v1/jobs/job_docs_ok/stream');
    docs.resetPolls();
    const watch = await cycle(['job', 'watch', 'job_docs_ok']);
    noShapeFailure(watch);
    expect(watch.code).toBe(0);
    expect(watch.stderr).toMatch(/job_docs_ok provisioning/);
    expect(watch.stderr).toMatch(/job_docs_ok completed/);
  });

  it('job submit --wait keeps waiting through an unknown status, by polling, to the terminal one', async () => {
    const result = await cycle(['job', 'submit', '--project', 'demo', '--wait']);
    noShapeFailure(result);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('job_docs_ok\n');
    expect(result.stderr).toMatch(/job_docs_ok provisioning/);
    expect(result.stderr).toMatch(/job_docs_ok completed/);
    // The docs' poll loop: the job asked for until it ended (2 answers of `provisioning`, then the end).
    expect(docs.requests.filter((r) => r === 'GET /api/v1/jobs/job_docs_ok').length).toBeGreaterThanOrEqual(3);
  });

  it('a failed --wait shows the error and recommended_action, exit 6', async () => {
    const result = await cycle(['job', 'submit', '--project', 'demo', '--meta', 'outcome=fail', '--wait']);
    noShapeFailure(result);
    expect(result.code).toBe(6);
    expect(result.stderr).toMatch(/job job_docs_fail failed: the runner exited with code 1/);
    expect(result.stderr).toMatch(/recommended action: fix the payload field `seed` and resubmit/);
  });

  it('job submit --json prints the answer as it came', async () => {
    const result = await cycle(['job', 'submit', '--project', 'demo', '--json']);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      job_id: 'job_docs_ok',
      status: 'queued',
      hold_usd: 0.25,
      x_unknown_field: { kept: true },
      summary: 'made by a fake server',
    });
  });

  it('job cancel reads the answer liberally', async () => {
    const result = await cycle(['job', 'cancel', 'job_docs_ok']);
    noShapeFailure(result);
    expect(result.stdout).toBe('job_docs_ok\tcancelling\n');
  });

  it('a 402 prints the shortfall from the quote and how to fund the account, exit 7', async () => {
    const result = await cycle(['job', 'submit', '--project', 'demo', '--meta', 'outcome=broke']);
    expect(result.code).toBe(7);
    expect(result.stderr).toMatch(/the account has too little money: short by \$10\.50 \(HTTP 402\)/);
    expect(result.stderr).toMatch(/hint: fund the account .*then run the same command again/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('recipe, account and project create against the documented routes', () => {
  it('recipe list, show and submit --wait', async () => {
    const list = await cycle(['recipe', 'list']);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toBe('simple-amm\tan AMM simulation\n');
    const show = await cycle(['recipe', 'show', 'simple-amm']);
    expect(show.stdout).toMatch(/^schema: \{/m);
    expect(show.stdout).toMatch(/"steps"/);
    expect(JSON.parse((await cycle(['recipe', 'show', 'simple-amm', '--json'])).stdout)).toMatchObject({ operations: ['simulate'] });
    docs.bodies.length = 0;
    const submit = await cycle(['recipe', 'submit', 'simple-amm', '--payload', '{"steps": 10}', '--timeout', '2m', '--wait']);
    expect(submit.code, submit.stderr).toBe(0);
    expect(submit.stdout).toBe('job_docs_ok\n');
    expect(docs.bodies).toEqual([{ payload: { steps: 10 }, timeout_s: 120 }]);
  });

  it('recipe submit with a payload that is not an object is a usage error before any request', async () => {
    const result = await cycle(['recipe', 'submit', 'simple-amm', '--payload', '[1]']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--payload must be a JSON object/);
    expect(docs.requests).toEqual([]);
  });

  it('account balance, holds and ledger', async () => {
    const balance = await cycle(['account', 'balance']);
    expect(balance.code, balance.stderr).toBe(0);
    expect(balance.stdout).toBe('available  $17.50\nheld       $2.50\nledger     $20.00\n');
    expect(JSON.parse((await cycle(['account', 'balance', '--json'])).stdout)).toEqual({
      ledger_balance_usd: 20,
      held_usd: '2.5',
      available_usd: 17.5,
      currency: 'USD',
    });
    expect((await cycle(['account', 'holds'])).stdout).toBe('job_id=job_docs_ok  amount_usd=2.5\n');
    expect((await cycle(['account', 'ledger'])).stdout).toBe('at=2026-12-01T00:00:00Z  amount_usd=20  kind=deposit\n');
  });

  it('project create sends the name and --remote-dir', async () => {
    docs.bodies.length = 0;
    const result = await cycle(['project', 'create', 'demo', '--remote-dir', '/projects/demo']);
    expect(result.code, result.stderr).toBe(0);
    expect(docs.bodies).toEqual([{ name: 'demo', remote_dir: '/projects/demo' }]);
    expect((await cycle(['project', 'create', 'Bad Name'])).code).toBe(2);
  });

  it('artifacts upload prints the id, and skips the bytes the second time (the backend has them)', async () => {
    const fs = await import('node:fs/promises');
    const { createHash } = await import('node:crypto');
    await fs.writeFile(path.join(cwd, 'train.csv'), 'a,b\n1,2\n');
    const id = `art_${createHash('sha256').update('a,b\n1,2\n').digest('hex').slice(0, 16)}`;
    const first = await cycle(['artifacts', 'upload', 'train.csv']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toBe(`${id}\n`);
    expect(docs.requests).toEqual(['POST /api/v1/artifacts/direct', 'POST /api/v1/artifacts']);
    docs.requests.length = 0;
    const second = await cycle(['artifacts', 'upload', 'train.csv', '--json']);
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout)).toEqual([expect.objectContaining({ file: 'train.csv', id, size: 8, uploaded: false })]);
    expect(docs.requests).toEqual(['POST /api/v1/artifacts/direct']);
    const missing = await cycle(['artifacts', 'upload', 'nope.csv']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/nope\.csv: no such file/);
  });
});

/** What the docs-only server adds to every answer: kept by --json. */
const EXTRA = { x_unknown_field: { kept: true }, summary: 'made by a fake server' };

describe('answers whose bodies the docs do not show (project, kv, batch, artifacts, cancel)', () => {
  it('project status: documented fields only, the rest `-`; an unknown status word shown; --json unchanged', async () => {
    docs.provisioningPolls = 100;
    try {
      const text = await cycle(['project', 'status', '--project', 'demo']);
      noShapeFailure(text);
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout).toMatch(/^revision\s+3$/m);
      expect(text.stdout).toMatch(/^content hash\s+-$/m);
      expect(text.stdout).toMatch(/^ready for jobs\s+no$/m);
      expect(text.stdout).toMatch(/^build\s+-$/m);
      expect(text.stdout).toMatch(/^status\s+warming$/m);
      const json = await cycle(['project', 'status', '--project', 'demo', '--json']);
      expect(JSON.parse(json.stdout)).toEqual({ project: 'demo', revision: 3, can_accept_new_jobs: true, ready_for_jobs: false, status: 'warming', ...EXTRA });
      const details = await cycle(['project', 'status', '--project', 'demo', '--details']);
      expect(details.code, details.stderr).toBe(0);
      expect(details.stdout).toMatch(/^gpu-node-1\s+warming\s+no\s*$/m);
      expect(JSON.parse((await cycle(['project', 'status', '--project', 'demo', '--details', '--json'])).stdout).nodes).toEqual([
        { node: 'gpu-node-1', state: 'warming', ready: false, x_node_field: 1 },
      ]);
    } finally {
      docs.provisioningPolls = 2;
    }
  });

  it('project status --watch waits on ready_for_jobs where the server sends no build state', async () => {
    const result = await cycle(['project', 'status', '--project', 'demo', '--watch']);
    noShapeFailure(result);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^ready for jobs\s+yes$/m);
    // Two answers of `warming`, then ready.
    expect(docs.requests.filter((r) => r === 'GET /api/v1/projects/demo/status')).toHaveLength(3);
  });

  it('project status --watch names the fields it needs when the answer has neither; without --watch it shows what there is', async () => {
    const watch = await cycle(['project', 'status', '--project', 'legacy', '--watch']);
    expect(watch.code).toBe(5);
    expect(watch.stderr).toContain(
      "cycle does not understand the server's answer to GET /api/v1/projects/legacy/status: it has no `build.state` or `ready_for_jobs` field (expected one, to tell when the build ends)",
    );
    expect(watch.stderr).toMatch(/hint: .*CYCLE_API_URL/);
    const once = await cycle(['project', 'status', '--project', 'legacy']);
    expect(once.code, once.stderr).toBe(0);
    expect(once.stdout).toMatch(/^ready for jobs\s+-$/m);
  });

  it('project prepare and invalidate read nothing they need; --json prints the answers unchanged', async () => {
    const prepare = await cycle(['project', 'prepare', '--project', 'demo']);
    noShapeFailure(prepare);
    expect(prepare.code, prepare.stderr).toBe(0);
    expect(prepare.stderr).toMatch(/preparing demo \(build: initializing\); follow it with: cycle project status --watch/);
    expect(JSON.parse((await cycle(['project', 'prepare', '--project', 'demo', '--json'])).stdout)).toEqual({
      project: 'demo',
      status: 'initializing',
      ...EXTRA,
    });
    const invalidate = await cycle(['project', 'invalidate', '--project', 'demo']);
    noShapeFailure(invalidate);
    expect(invalidate.code, invalidate.stderr).toBe(0);
    expect(invalidate.stderr).toMatch(/invalidated demo; the next job builds again/);
    expect(JSON.parse((await cycle(['project', 'invalidate', '--project', 'demo', '--json'])).stdout)).toEqual({ ok: true, ...EXTRA });
  });

  it('project upload: creates the project on 404, reads the push answer liberally, keeps its fields in --json', async () => {
    const root = await cycleswapProject();
    const first = await cycle(['project', 'upload', '--project', 'docs-up'], { cwd: root });
    noShapeFailure(first);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/the backend has no project docs-up: creating it/);
    expect(first.stdout).toMatch(/^revision 1 {2}content [0-9a-f]{12} {2}build [0-9a-f]{12}$/m);
    expect(docs.requests).toEqual([
      'GET /api/v1/projects/docs-up/status',
      'POST /api/v1/projects/docs-up/push',
      'POST /api/v1/projects',
      'POST /api/v1/projects/docs-up/push',
    ]);
    // The status has no content hash to compare: the upload goes (a content-addressed push).
    const second = await cycle(['project', 'upload', '--project', 'docs-up', '--json'], { cwd: root });
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout)).toMatchObject({ project: 'docs-up', uploaded: true, revision: 2, status: 'published', format: 'cycleswap', ...EXTRA });
    expect(JSON.parse(second.stdout).content_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('kv set, get and list: only `value` (get) and `key` (list) are needed; --json prints the answers unchanged', async () => {
    const set = await cycle(['kv', 'set', 'demo', 'best_lr', '0.003']);
    noShapeFailure(set);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stderr).toMatch(/demo\/best_lr = 0\.003/);
    expect(JSON.parse((await cycle(['kv', 'set', 'demo', 'config', '{"depth": 4}', '--json'])).stdout)).toEqual({ key: 'config', stored: true, ...EXTRA });
    const get = await cycle(['kv', 'get', 'demo', 'best_lr']);
    expect(get.code, get.stderr).toBe(0);
    expect(get.stdout).toBe('0.003\n');
    expect(JSON.parse((await cycle(['kv', 'get', 'demo', 'config', '--json'])).stdout)).toEqual({ key: 'config', value: { depth: 4 }, version: 1, ...EXTRA });
    const list = await cycle(['kv', 'list', 'demo']);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toBe('best_lr\t0.003\nconfig\t{"depth":4}\n');
    expect(JSON.parse((await cycle(['kv', 'list', 'demo', '--json'])).stdout)).toEqual([
      { key: 'best_lr', value: 0.003, ...EXTRA },
      { key: 'config', value: { depth: 4 }, ...EXTRA },
    ]);
  });

  it('kv get names the `value` field when the answer lacks it, and reads a FastAPI 404', async () => {
    const noValue = await cycle(['kv', 'get', 'demo', 'no-value']);
    expect(noValue.code).toBe(5);
    expect(noValue.stderr).toContain(
      "error: cycle does not understand the server's answer to GET /api/v1/projects/demo/kv/no-value: it has no `value` field (expected the JSON value)",
    );
    const missing = await cycle(['kv', 'get', 'demo', 'never-set']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error: path\.key: no key never-set \(HTTP 404\)$/m);
  });

  it('job batch: entries without `index` or `ok` are read by their place; a refusal shows its message; --json keeps each answer', async () => {
    const dir = await tempDir();
    const file = path.join(dir, 'jobs.jsonl');
    await fs.writeFile(file, ['{"project": "demo"}', '{"project": "nope"}', '{"project": "demo", "payload": {"i": 2}}'].join('\n'));
    const text = await cycle(['job', 'batch', file]);
    noShapeFailure(text);
    expect(text.code).toBe(1);
    expect(text.stdout).toBe('1\tjob_docs_batch0\n2\terror\tproject nope does not exist\n3\tjob_docs_batch2\n');
    const json = await cycle(['job', 'batch', file, '--json']);
    const doc: unknown = JSON.parse(json.stdout);
    expect(doc).toMatchObject({
      submitted: 2,
      failed: 1,
      jobs: [
        { line: 1, ok: true, id: 'job_docs_batch0', answer: { job_id: 'job_docs_batch0', status: 'provisioning', ...EXTRA } },
        { line: 2, ok: false, id: null, error: 'project nope does not exist', answer: { error: { message: 'project nope does not exist' } } },
        { line: 3, ok: true, id: 'job_docs_batch2' },
      ],
    });
  });

  it('artifacts list: `artifact_id` and `filename` read, --json unchanged; an artifact without an id is named', async () => {
    const list = await cycle(['artifacts', 'list', '--job', 'job_docs_ok']);
    noShapeFailure(list);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toBe('art_docs_result\tjob_docs_ok\t10\tresult.txt\n');
    const json = JSON.parse((await cycle(['artifacts', 'list', '--json'])).stdout);
    expect(json).toEqual([expect.objectContaining({ artifact_id: 'art_docs_result', filename: 'result.txt', ...EXTRA })]);
    const noId = await cycle(['artifacts', 'list', '--job', 'job_docs_noid']);
    expect(noId.code).toBe(5);
    expect(noId.stderr).toContain(
      "cycle does not understand the server's answer to GET /api/v1/artifacts: it has an artifact without an `id` or `artifact_id` field (in `artifacts.0.id`)",
    );
  });

  it('artifacts download --job and job pull use the listed `artifact_id`, `filename`, size and sha256', async () => {
    const out = await tempDir();
    const download = await cycle(['artifacts', 'download', '--job', 'job_docs_ok', '--out', out]);
    noShapeFailure(download);
    expect(download.code, download.stderr).toBe(0);
    expect(await fs.readFile(path.join(out, 'result.txt'), 'utf8')).toBe('score,0.5\n');
    docs.provisioningPolls = 0;
    try {
      const pullDir = path.join(out, 'pulled');
      const first = await cycle(['job', 'pull', 'job_docs_ok', '--out', pullDir, '--json']);
      expect(first.code, first.stderr).toBe(0);
      expect(JSON.parse(first.stdout)).toMatchObject({ job_id: 'job_docs_ok', status: 'completed', artifacts: [{ id: 'art_docs_result', skipped: false }] });
      expect(await fs.readFile(path.join(pullDir, 'result.txt'), 'utf8')).toBe('score,0.5\n');
      // The listed size and sha256 match the file already there: not fetched again.
      docs.requests.length = 0;
      const second = await cycle(['job', 'pull', 'job_docs_ok', '--out', pullDir, '--json']);
      expect(JSON.parse(second.stdout)).toMatchObject({ artifacts: [{ id: 'art_docs_result', skipped: true }] });
      expect(docs.requests).not.toContain('GET /api/v1/artifacts/art_docs_result');
    } finally {
      docs.provisioningPolls = 2;
    }
  });

  it('job cancel takes an empty answer (204); job submit an answer with the id alone', async () => {
    const cancel = await cycle(['job', 'cancel', 'job_docs_fail']);
    noShapeFailure(cancel);
    expect(cancel.code, cancel.stderr).toBe(0);
    expect(cancel.stdout).toBe('job_docs_fail\t-\n');
    expect(JSON.parse((await cycle(['job', 'cancel', 'job_docs_fail', '--json'])).stdout)).toEqual([{ job_id: 'job_docs_fail' }]);
    const submit = await cycle(['job', 'submit', '--project', 'demo', '--meta', 'outcome=bare']);
    noShapeFailure(submit);
    expect(submit.code, submit.stderr).toBe(0);
    expect(submit.stdout).toBe('job_docs_ok\n');
  });
});

describe('error bodies and unreadable answers in any shape', () => {
  /** A server that answers each path with the status and body the test gives. */
  async function answering(
    routes: Record<string, { status: number; body: string; type?: string }>,
  ): Promise<{ api: ApiClient; url: string; close: () => Promise<void> }> {
    const server = http.createServer((req, res) => {
      const route = routes[new URL(req.url ?? '/', 'http://x').pathname] ?? { status: 404, body: 'no route' };
      res.writeHead(route.status, { 'content-type': route.type ?? 'application/json' });
      res.end(route.body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    const api = new ApiClient({ baseUrl: url, token: 't', version: 'test', attempts: 1 });
    return {
      api,
      url,
      close: async () => {
        await api.close();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  }

  it.each([
    ['{"detail": "Job not found"}', 404, 'Job not found (HTTP 404)', 'http_404'],
    [
      '{"detail": [{"loc": ["body", "payload", "steps"], "msg": "field required", "type": "missing"}]}',
      422,
      'body.payload.steps: field required (HTTP 422)',
      'http_422',
    ],
    ['{"error": {"code": "bad_request", "message": "nested message"}}', 400, 'nested message (HTTP 400)', 'bad_request'],
    ['{"error": "flat error", "code": "conflict"}', 409, 'flat error (HTTP 409)', 'conflict'],
    ['{"message": "top-level message"}', 400, 'top-level message (HTTP 400)', 'http_400'],
    ['upstream exploded', 500, 'GET /api/v1/jobs/j failed on the server (HTTP 500): upstream exploded', 'http_500'],
  ])('an error body %s gives a clear message', async (body, status, message, code) => {
    const server = await answering({ '/api/v1/jobs/j': { status, body, type: body.startsWith('{') ? 'application/json' : 'text/plain' } });
    try {
      await expect(server.api.getJob('j')).rejects.toMatchObject({ status, code, message });
    } finally {
      await server.close();
    }
  });

  it('a list under another name, or a field of the wrong type, is named with what was expected', async () => {
    const server = await answering({
      '/api/v1/projects/p/kv': { status: 200, body: '{"keys": ["a"]}' },
      '/api/v1/volumes': { status: 200, body: '[{"name": 7}]' },
    });
    try {
      await expect(server.api.kvList('p')).rejects.toMatchObject({
        exitCode: 5,
        message: "cycle does not understand the server's answer to GET /api/v1/projects/p/kv: it has no `entries` field (expected a list)",
      });
      await expect(server.api.listVolumes()).rejects.toMatchObject({
        exitCode: 5,
        message: "cycle does not understand the server's answer to GET /api/v1/volumes: it has `0.name` = 7 (expected text)",
      });
    } finally {
      await server.close();
    }
  });

  it('a kv set answered 204 (no body) is stored, not an answer cycle cannot read', async () => {
    const server = await answering({ '/api/v1/projects/p/kv/k': { status: 204, body: '' } });
    try {
      await expect(server.api.kvPut('p', 'k', 1)).resolves.toBeNull();
    } finally {
      await server.close();
    }
  });

  it('auth status takes any answer to the job list as the token accepted (nothing of it is read)', async () => {
    const server = await answering({ '/api/v1/jobs': { status: 200, body: '{"items": [{"job_id": "j"}], "x_unknown_field": 1}' } });
    try {
      const result = await cycle(['auth', 'status', '--json'], { apiUrl: server.url });
      expect(result.code, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ accepted: true, problem: null });
    } finally {
      await server.close();
    }
  });

  it('volume list reads a bare list with the name only (the rest `-`), --json unchanged; volume rm takes an empty answer', async () => {
    const server = await answering({
      '/api/v1/volumes': { status: 200, body: '[{"name": "data", "x_unknown_field": 1}]' },
      '/api/v1/volumes/data': { status: 204, body: '' },
    });
    try {
      const list = await cycle(['volume', 'list'], { apiUrl: server.url });
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).toBe('data\t-\t-\t-\n');
      expect(JSON.parse((await cycle(['volume', 'list', '--json'], { apiUrl: server.url })).stdout)).toEqual([{ name: 'data', x_unknown_field: 1 }]);
      const rm = await cycle(['volume', 'rm', 'data'], { apiUrl: server.url });
      expect(rm.code, rm.stderr).toBe(0);
      expect(rm.stderr).toMatch(/removed volume data/);
    } finally {
      await server.close();
    }
  });
});
