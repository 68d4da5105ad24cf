import { describe, expect, it } from 'vitest';
import { fakeContext, runCycle, tempDir } from '../helpers/context.js';
import { HttpStubs, httpStubs, json, text } from '../helpers/http-stubs.js';

// Commands against one stubbed answer at a time: what a user sees when the server says no, fails
// or answers in a shape cycle cannot use. The client is the real one (ctx.api() over the stubs);
// the in-process server's tests (job-cli, liberal-client, server-api) cover the happy paths.

describe('job submit', () => {
  it('a 402 is exit 7, with the shortfall from the quote and how to go on', async () => {
    const http = httpStubs();
    http.register(
      'POST',
      '/api/v1/jobs',
      json(402, { error: { code: 'insufficient_funds', message: 'the job needs $20.00' }, quote: { estimate_usd: 20, shortfall_usd: '12.5' } }),
      { body: (body) => (body as { project?: string }).project === 'demo' },
    );
    const result = await runCycle(['job', 'submit', '--project', 'demo', '--payload', '{"model":"m1"}'], { cwd: await tempDir(), http });
    expect(result.code).toBe(7);
    expect(result.stderr).toMatch(/POST \/api\/v1\/jobs: the account has too little money: short by \$12\.50 \(HTTP 402\): the job needs \$20\.00/);
    expect(result.stderr).toMatch(/fund the account/);
    expect(result.stdout).toBe('');
    // One request (a 402 is not retried), carrying the job as the flags described it.
    expect(http.requests).toHaveLength(1);
    expect(http.requests[0]).toMatchObject({ body: { project: 'demo', payload: { model: 'm1' } } });
    expect(http.requests[0]?.headers['idempotency-key']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('a 2xx without a job id is exit 5, naming the route and the field', async () => {
    const http = httpStubs();
    http.register('POST', '/api/v1/jobs', json(201, { status: 'queued' }));
    const result = await runCycle(['job', 'submit', '--project', 'demo'], { cwd: await tempDir(), http });
    expect(result.code).toBe(5);
    expect(result.stderr).toMatch(/does not understand the server's answer to POST \/api\/v1\/jobs: it has no `id` or `job_id` field/);
  });
});

describe('job get', () => {
  it('a 503 on every attempt is exit 5, after the retries, with the status and the route', async () => {
    const http = httpStubs();
    // The client tries a GET five times (waits on the fake clock, so no time passes).
    http.register('GET', '/api/v1/jobs/job_1', text(503, 'upstream unavailable'), { times: 5 });
    const result = await runCycle(['job', 'get', 'job_1'], { cwd: await tempDir(), http });
    expect(result.code).toBe(5);
    expect(result.stderr).toMatch(/GET \/api\/v1\/jobs\/job_1 failed on the server \(HTTP 503\): upstream unavailable/);
    expect(result.stderr).toMatch(/try again later/);
  });

  it('a 500 is not retried: one request, exit 5 with the server’s message', async () => {
    const http = httpStubs();
    http.register('GET', '/api/v1/jobs/job_1', json(500, { error: { code: 'internal', message: 'database is locked' } }));
    const result = await runCycle(['job', 'get', 'job_1'], { cwd: await tempDir(), http });
    expect(result.code).toBe(5);
    expect(result.stderr).toMatch(/failed on the server \(HTTP 500\): database is locked/);
    expect(http.requests).toHaveLength(1);
  });

  it('a 503 then the job: the retry answers, and the job is printed', async () => {
    const http = httpStubs();
    http.register('GET', '/api/v1/jobs/job_1', text(503, 'busy', { 'retry-after': '1' }));
    http.register('GET', '/api/v1/jobs/job_1', json(200, { job_id: 'job_1', status: 'running', counts: { total: 4, succeeded: 1 } }));
    const result = await runCycle(['job', 'get', 'job_1'], { cwd: await tempDir(), http });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/job\s+job_1/);
    expect(result.stdout).toMatch(/status\s+running/);
  });
});

describe('job list', () => {
  it('a job without a status is exit 5, naming the route and the field', async () => {
    const http = httpStubs();
    http.register('GET', '/api/v1/jobs', json(200, { jobs: [{ id: 'job_1', status: 'completed' }, { id: 'job_2' }] }), { query: { limit: '20' } });
    const result = await runCycle(['job', 'list'], { cwd: await tempDir(), http });
    expect(result.code).toBe(5);
    expect(result.stderr).toMatch(/does not understand the server's answer to GET \/api\/v1\/jobs: it has no `jobs\.1\.status` field \(expected text\)/);
    expect(result.stderr).toMatch(/check CYCLE_API_URL/);
    expect(result.stdout).toBe('');
  });

  it('the filters go as query parameters; a bare list is read as well', async () => {
    const http = httpStubs();
    http.register('GET', '/api/v1/jobs', json(200, [{ job_id: 'job_9', status: 'failed', project: 'demo', tags: ['nightly'] }]), {
      query: { tag: 'nightly', status: 'failed', limit: '5' },
    });
    const result = await runCycle(['job', 'list', '--tag', 'nightly', '--status', 'failed', '--limit', '5'], { cwd: await tempDir(), http });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe('job_9\tfailed\tdemo\t-\t\tnightly\n');
  });
});

describe('account balance', () => {
  it('prints the three amounts, numbers or text, and ? where one is missing', async () => {
    const http = httpStubs();
    http.register('GET', '/api/v1/account/balance', json(200, { available_usd: 7.5, held_usd: '2.5' }));
    const result = await runCycle(['account', 'balance'], { cwd: await tempDir(), http });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe('available  $7.50\nheld       $2.50\nledger     ?\n');
  });

  it('--json prints the answer as it came, unknown fields kept', async () => {
    const http = httpStubs();
    const answer = { available_usd: 1, held_usd: 0, ledger_balance_usd: 1, currency: 'USD', credits: { promo: 3 } };
    http.register('GET', '/api/v1/account/balance', json(200, answer));
    const result = await runCycle(['account', 'balance', '--json'], { cwd: await tempDir(), http });
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual(answer);
  });

  it('a refused token (401) is exit 4, with how to log in again', async () => {
    const http = httpStubs();
    http.register('GET', '/api/v1/account/balance', json(401, { detail: 'token expired' }));
    const result = await runCycle(['account', 'balance'], { cwd: await tempDir(), http });
    expect(result.code).toBe(4);
    expect(result.stderr).toMatch(/the server refused the token \(HTTP 401\): token expired/);
    expect(result.stderr).toMatch(/cycle auth login --api-url http:\/\/cycle-stubs\.invalid/);
  });

  it('a balance that is not a JSON object is exit 5, naming the route', async () => {
    const http = httpStubs();
    http.register('GET', '/api/v1/account/balance', json(200, ['7.50']));
    const result = await runCycle(['account', 'balance'], { cwd: await tempDir(), http });
    expect(result.code).toBe(5);
    expect(result.stderr).toMatch(/answer to GET \/api\/v1\/account\/balance: it is not what was expected \(expected a JSON object/);
  });
});

describe('the stubs themselves', () => {
  it('a request no stub matches fails in the client and is named by verify()', async () => {
    const http = new HttpStubs();
    const { ctx } = fakeContext({ cwd: await tempDir(), http, env: { CYCLE_HTTP_RETRIES: '1' } });
    const api = await ctx.api({});
    await expect(api.getJob('job_x')).rejects.toMatchObject({ exitCode: 5, message: expect.stringMatching(/no HTTP stub for GET \/api\/v1\/jobs\/job_x/) });
    expect(() => http.verify()).toThrow(/no stub matched GET \/api\/v1\/jobs\/job_x/);
    await http.dispatcher.close();
  });

  it('a stub used fewer times than registered fails verify(), saying where it was registered', async () => {
    const http = new HttpStubs();
    http.register('GET', '/api/v1/account/balance', json(200, {}), { times: 2 });
    const { ctx } = fakeContext({ cwd: await tempDir(), http });
    await (await ctx.api({})).balance();
    expect(() => http.verify()).toThrow(/stub GET \/api\/v1\/account\/balance was answered 1 of 2 time\(s\) \(registered at .*command-stubs\.test\.ts/);
    await (await ctx.api({})).balance();
    expect(() => http.verify()).not.toThrow();
    await http.dispatcher.close();
  });

  it('a body check that fails leaves the stub unmatched', async () => {
    const http = new HttpStubs();
    http.register('POST', '/api/v1/jobs', json(201, { id: 'job_1', status: 'queued' }), { body: (body) => (body as { project?: string }).project === 'other' });
    const { ctx } = fakeContext({ cwd: await tempDir(), http });
    await expect((await ctx.api({})).submitJob({ project: 'demo' })).rejects.toMatchObject({ exitCode: 5 });
    expect(() => http.verify()).toThrow(/no stub matched POST \/api\/v1\/jobs[\s\S]*answered 0 of 1/);
    await http.dispatcher.close();
  });
});

describe('dashboard', () => {
  it('prints only the sign-in link when stdout is not a terminal: the server path joined to --api-url, the token never in it', async () => {
    const http = httpStubs();
    http.register('POST', '/api/v1/dashboard/links', json(201, { path: '/signin?code=abcDEF123_-', expires_at: '2026-12-07T15:00:00Z', ttl_s: 600 }));
    const result = await runCycle(['dashboard'], { cwd: await tempDir(), http });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe(`${http.origin}/signin?code=abcDEF123_-\n`);
    expect(result.stdout).not.toContain('stub-token');
    expect(http.requests[0]?.headers.authorization).toBe('Bearer stub-token');
  });

  it('refuses a link that is not a sign-in path (a server cannot send the browser elsewhere)', async () => {
    const http = httpStubs();
    http.register('POST', '/api/v1/dashboard/links', json(201, { path: '//evil.example/phish' }));
    const result = await runCycle(['dashboard', '--no-open'], { cwd: await tempDir(), http });
    expect(result.code).toBe(5);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/POST \/api\/v1\/dashboard\/links/);
  });
});
