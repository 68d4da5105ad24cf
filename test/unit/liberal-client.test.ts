import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../src/cli.js';
import { createContext } from '../../src/context.js';
import { Capture, fixedClock, tempDir } from '../helpers/context.js';
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
async function cycle(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new Capture();
  const stderr = new Capture();
  const stdin = new PassThrough();
  stdin.end('');
  const io = { stdout, stderr, stdin };
  const env = { HOME: cwd, XDG_CONFIG_HOME: path.join(cwd, '.cfg'), NO_COLOR: '1', CYCLE_API_URL: docs.url, CYCLE_TOKEN: docs.token, CYCLE_HTTP_RETRIES: '1' };
  const code = await main(['node', 'cycle', ...args], {
    io,
    env,
    cwd,
    handleSignals: false,
    contextFactory: async (global, signal) => createContext({ io, env, cwd, global, version: 'test', signal, clock: fixedClock() }),
  });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

const noShapeFailure = (result: { code: number; stderr: string }): void => {
  expect(result.stderr).not.toMatch(/the server's answer to|expected shape/);
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
