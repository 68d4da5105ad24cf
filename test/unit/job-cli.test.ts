import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/server/index.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { startFakeDockerServer, pushValidProject } from '../helpers/server.js';
import { cycleswapProject, tempDir, writeFiles, runMain } from '../helpers/context.js';
import { waitFor } from '../helpers/wait.js';
import { safeRelativeName } from '../../src/commands/artifacts.js';
import { runWithStdoutClosed } from '../helpers/binary.js';

let server: RunningServer;
let root: string;
beforeAll(async () => {
  server = await startFakeDockerServer(new FakeDocker(), {
    dataDir: await tempDir(),
  });
  await pushValidProject(server, 'demo');
  root = await cycleswapProject();
});
afterAll(async () => server.close());

async function cycle(
  args: string[],
  options: { env?: Record<string, string | undefined>; stdin?: string; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const cwd = options.cwd ?? root;
  return runMain(args, {
    env: { HOME: cwd, XDG_CONFIG_HOME: path.join(cwd, '.cfg'), CYCLE_API_URL: server.url, CYCLE_TOKEN: server.token, CYCLE_HTTP_RETRIES: '1', ...options.env },
    cwd,
    ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
  });
}

const unreachable = { CYCLE_API_URL: 'http://127.0.0.1:9' };

describe('job commands: bad inputs give a clear message and the documented exit code', () => {
  const cases: Array<[string, string[], number, RegExp, Record<string, string | undefined>?]> = [
    ['an unknown flag', ['job', 'submit', '--payloadd', '{}'], 2, /unknown option '--payloadd'/],
    ['--payload that is not JSON', ['job', 'submit', '--payload', '{"a": 1,}'], 2, /--payload is not valid JSON: .* at line 1, column 9/, unreachable],
    ['--payload that is a list', ['job', 'submit', '--payload', '[1]'], 2, /--payload must be a JSON object/, unreachable],
    ['a missing @file', ['job', 'submit', '--payload', '@nope.json'], 2, /--payload @nope\.json: no such file/, unreachable],
    [
      'mixed fan-out flags',
      ['job', 'submit', '--fan-out-by', 'x', '--chunks', '3', '--range-field', 'r', '--total', '9'],
      2,
      /--fan-out-by and --chunks\/--range-field\/--total cannot be mixed/,
      unreachable,
    ],
    ['--chunks without --total', ['job', 'submit', '--chunks', '3', '--range-field', 'r'], 2, /--chunks, --range-field and --total go together/, unreachable],
    ['a bad --type', ['job', 'submit', '--type', 'magic'], 2, /Allowed choices are structured_runner, sweep, map_reduce, benchmark/],
    ['a bad --timeout', ['job', 'submit', '--timeout', '5x'], 2, /--timeout 5x: expected seconds or a duration/, unreachable],
    ['a bad --require', ['job', 'submit', '--require', 'gpu'], 2, /--require gpu: expected KEY=NUMBER pairs/, unreachable],
    ['an unterminated quote in --runner', ['job', 'submit', '--runner', 'python3 "eval.py'], 2, /--runner: unterminated " quote/, unreachable],
    [
      '--runner-json that is not an array',
      ['job', 'submit', '--runner-json', '"python3"'],
      2,
      /--runner-json: expected a non-empty JSON array of strings/,
      unreachable,
    ],
    ['--meta without =', ['job', 'submit', '--meta', 'oops'], 2, /--meta oops: expected KEY=VALUE/, unreachable],
    ['--batch-size 0', ['job', 'submit', '--batch-size', '0'], 2, /--batch-size 0: expected a positive whole number/, unreachable],
    ['an invalid --project name', ['job', 'submit', '--project', 'Bad Name'], 2, /invalid project name "Bad Name"/, unreachable],
    ['a non-http --callback-url', ['job', 'submit', '--callback-url', 'ftp://x'], 2, /invalid job: callback_url: expected an http\(s\) URL/, unreachable],
    ['an unknown job id', ['job', 'get', 'job_nope'], 1, /error: no job "job_nope" \(HTTP 404\)/],
    ['no token', ['job', 'list'], 4, /no token for http:\/\/127\.0\.0\.1:\d+[\s\S]*hint: run `cycle auth login`/, { CYCLE_TOKEN: undefined }],
    ['a refused token', ['job', 'list'], 4, /the server refused the token \(HTTP 401\)/, { CYCLE_TOKEN: 'cyc_wrong' }],
    ['no API URL', ['job', 'list'], 2, /no API URL/, { CYCLE_API_URL: undefined }],
    ['job watch without ids', ['job', 'watch'], 2, /missing required argument 'ids'/],
    ['a bad --status', ['job', 'list', '--status', 'done'], 2, /--status done: expected one of planning, queued/],
    ['a server that is down', ['job', 'list'], 5, /cannot reach http:\/\/127\.0\.0\.1:9 .*connection refused/, unreachable],
    ['kv set with a value that is not JSON', ['kv', 'set', 'demo', 'k', 'hello'], 2, /VALUE is not valid JSON[\s\S]*a string needs quotes/],
    ['artifacts download of nothing', ['artifacts', 'download'], 2, /which artifacts\?/],
  ];

  it('covers at least 15 cases', () => expect(cases.length).toBeGreaterThanOrEqual(15));

  it.each(cases)('%s', async (_name, args, code, message, env) => {
    const result = await cycle(args, env ? { env } : {});
    expect(result.code, result.stderr).toBe(code);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('a batch file with a bad line 37 is refused before anything is sent', async () => {
    const lines = Array.from({ length: 40 }, (_, i) => JSON.stringify({ project: 'demo', payload: { i } }));
    lines[36] = '{"project": "demo", "payload": {"i": 36}'; // line 37: broken
    const dir = await tempDir();
    await fs.writeFile(path.join(dir, 'jobs.jsonl'), lines.join('\n') + '\n');
    const before = (await (await fetch(`${server.url}/api/v1/jobs?limit=1000`, { headers: { authorization: `Bearer ${server.token}` } })).json()) as {
      jobs: unknown[];
    };
    const result = await cycle(['job', 'batch', path.join(dir, 'jobs.jsonl')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('1 bad line; nothing was sent');
    expect(result.stderr).toMatch(/line 37: not valid JSON/);
    const after = (await (await fetch(`${server.url}/api/v1/jobs?limit=1000`, { headers: { authorization: `Bearer ${server.token}` } })).json()) as {
      jobs: unknown[];
    };
    expect(after.jobs.length).toBe(before.jobs.length);
  });
});

describe('job commands against the local server', () => {
  it('submit prints only the id when not at a terminal; --json the document', async () => {
    const plain = await cycle(['job', 'submit', '--project', 'demo', '--tag', 't1']);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/^job_[0-9a-z]+\n$/);
    const json = await cycle(['job', 'submit', '--project', 'demo', '--json', '--meta', 'lr=0.1', '--meta', 'name=x']);
    expect(JSON.parse(json.stdout)).toMatchObject({ project: 'demo', meta: { lr: 0.1, name: 'x' } });
  });

  it('batch: 250 jobs in two requests, an outcome per line', async () => {
    const dir = await tempDir();
    const lines = Array.from({ length: 250 }, (_, i) => JSON.stringify(i === 100 ? { project: 'nope' } : { project: 'demo', payload: { i } }));
    await fs.writeFile(path.join(dir, 'jobs.jsonl'), lines.join('\n'));
    const result = await cycle(['job', 'batch', path.join(dir, 'jobs.jsonl'), '--json']);
    expect(result.code).toBe(1);
    const doc = JSON.parse(result.stdout);
    expect(doc).toMatchObject({ submitted: 249, failed: 1 });
    expect(doc.jobs[100]).toMatchObject({ line: 101, ok: false, error: expect.stringContaining('no project "nope"') });
    expect(result.stderr).toContain('sent 200 of 250');
  });

  it('job logs shows the system lines apart from the output: [cycle] in text, "source" in --json', async () => {
    const { id } = JSON.parse((await cycle(['job', 'submit', '--project', 'demo', '--json'])).stdout) as { id: string };
    let status = '';
    await waitFor(
      async () => ['completed', 'failed'].includes((status = JSON.parse((await cycle(['job', 'get', id, '--json'])).stdout).status)),
      15_000,
      `job ${id} to finish`,
      () => status,
    );
    // This file's server makes a new fake Docker per call, so the task fails (no such image): its reason is in the log.
    const ended =
      status === 'completed'
        ? 'task 0 succeeded'
        : `task 0 failed: ${((await (await fetch(`${server.url}/api/v1/jobs/${id}/tasks`, { headers: { authorization: `Bearer ${server.token}` } })).json()) as { tasks: Array<{ error: string }> }).tasks[0]!.error.split('\n')[0]}`;
    const text = await cycle(['job', 'logs', id]);
    expect(text.stdout).toBe(`[cycle] task 0 started (attempt 1)\n[cycle] ${ended}\n`);
    const [task] = JSON.parse((await cycle(['job', 'logs', id, '--json'])).stdout) as Array<{ lines: unknown[] }>;
    expect(task!.lines).toEqual([
      { source: 'system', text: 'task 0 started (attempt 1)' },
      { source: 'system', text: ended },
    ]);
    const followed = (await cycle(['job', 'logs', id, '--follow', '--json'])).stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as unknown);
    expect(followed).toEqual([
      { task: 0, text: 'task 0 started (attempt 1)', source: 'system' },
      { task: 0, text: ended, source: 'system' },
    ]);
  });

  it('an idempotency key makes a resubmission return the same job', async () => {
    const a = await cycle(['job', 'submit', '--project', 'demo', '--idempotency-key', 'script-run-0001']);
    const b = await cycle(['job', 'submit', '--project', 'demo', '--idempotency-key', 'script-run-0001']);
    expect(b.stdout).toBe(a.stdout);
  });

  it('kv set/get/list round-trip JSON', async () => {
    await writeFiles(root, { 'cfg.json': '{"depth": 3}' });
    expect((await cycle(['kv', 'set', 'demo', 'cfg', '@cfg.json'])).code).toBe(0);
    expect((await cycle(['kv', 'get', 'demo', 'cfg'])).stdout).toBe('{"depth":3}\n');
    expect((await cycle(['kv', 'list', 'demo'])).stdout).toContain('cfg\t{"depth":3}');
  });
});

describe('job commands into a closed pipe (cycle job … | head -1)', () => {
  it('job list --json ends quietly with exit 0', async () => {
    const result = await runWithStdoutClosed(['job', 'list', '--json'], {
      cwd: root,
      env: { PATH: process.env.PATH, HOME: root, CYCLE_API_URL: server.url, CYCLE_TOKEN: server.token },
    });
    expect(result).toEqual({ code: 0, stderr: '' });
  });

  it('job logs --follow stops at once, quietly, instead of following a job nobody reads (exit 130)', async () => {
    const docker = new FakeDocker();
    let release = (): void => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    docker.onRun = async (_spec, io) => {
      io.stdout(Buffer.from('first line\n'));
      await released; // the task runs until the test is over
      return 0;
    };
    const dataDir = await tempDir();
    const busy = await startFakeDockerServer(docker, {
      dataDir,
    });
    try {
      await pushValidProject(busy, 'demo');
      const env = { CYCLE_API_URL: busy.url, CYCLE_TOKEN: busy.token };
      const id = (await cycle(['job', 'submit', '--project', 'demo'], { env })).stdout.trim();
      const result = await runWithStdoutClosed(['job', 'logs', id, '--follow'], { cwd: root, env: { PATH: process.env.PATH, HOME: root, ...env } });
      expect(result).toEqual({ code: 130, stderr: '' });
    } finally {
      release();
      await busy.close();
      await fs.rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('artifact names from a hostile server', () => {
  it.each([
    ['../../evil', 'evil'],
    ['/etc/passwd', 'etc/passwd'],
    ['a/../../../b.txt', 'a/b.txt'],
    ['..\\..\\win.txt', 'win.txt'],
    ['..', 'art_1'],
  ])('%s → %s', (name, expected) => {
    expect(safeRelativeName(name, 'art_1').relative).toBe(expected);
  });

  it('a download named ../../evil lands inside --out', async () => {
    const hostile = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-artifact-name': encodeURIComponent('../../evil'), 'content-length': '5' });
      res.end('owned');
    });
    await new Promise<void>((resolve) => hostile.listen(0, '127.0.0.1', resolve));
    const out = path.join(await tempDir(), 'deep', 'out');
    try {
      const result = await cycle(['artifacts', 'download', 'art_x', '--out', out], {
        env: { CYCLE_API_URL: `http://127.0.0.1:${(hostile.address() as { port: number }).port}` },
      });
      expect(result.code, result.stderr).toBe(0);
      expect(await fs.readFile(path.join(out, 'evil'), 'utf8')).toBe('owned');
      expect(result.stderr).toContain('saved as evil inside');
      await expect(fs.access(path.join(out, '..', '..', 'evil'))).rejects.toThrow();
    } finally {
      hostile.close();
    }
  });

  it('resumes a broken download from its part file and checks the sha256', async () => {
    const body = Buffer.from('0123456789'.repeat(1000));
    const { createHash } = await import('node:crypto');
    const sha = createHash('sha256').update(body).digest('hex');
    const ranges: string[] = [];
    const out = await tempDir();
    const savedBytes = async (): Promise<number> => {
      let total = 0;
      for (const name of await fs.readdir(out)) total += (await fs.stat(path.join(out, name))).size;
      return total;
    };
    let first = true;
    let brokenOff: Promise<void> | undefined;
    const flaky = http.createServer((req, res) => {
      ranges.push(String(req.headers.range ?? ''));
      const start = req.headers.range ? Number(/bytes=(\d+)-/.exec(req.headers.range)![1]) : 0;
      const headers = {
        'content-type': 'application/octet-stream',
        'x-artifact-name': 'data.bin',
        'x-artifact-size': String(body.length),
        'x-checksum-sha256': sha,
      };
      if (first) {
        first = false;
        res.writeHead(200, { ...headers, 'content-length': String(body.length) });
        res.write(body.subarray(0, 4000));
        // Broken off once the client has saved those bytes (in its part file), so there is something to resume from.
        brokenOff = waitFor(
          async () => (await savedBytes()) === 4000,
          15_000,
          'the client to save the first 4,000 bytes',
          async () => `${await savedBytes()} bytes`,
        ).finally(() => res.destroy());
        brokenOff.catch(() => undefined); // awaited (and so reported) after the first download
        return;
      }
      res.writeHead(206, { ...headers, 'content-length': String(body.length - start), 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` });
      res.end(body.subarray(start));
    });
    await new Promise<void>((resolve) => flaky.listen(0, '127.0.0.1', resolve));
    const env = { CYCLE_API_URL: `http://127.0.0.1:${(flaky.address() as { port: number }).port}` };
    try {
      const broken = await cycle(['artifacts', 'download', 'art_1', '--out', out], { env });
      await brokenOff;
      expect(broken.code).toBe(5);
      expect(broken.stderr).toContain('run the command again to resume');
      await expect(fs.access(path.join(out, 'data.bin'))).rejects.toThrow(); // nothing half-written under the real name
      const resumed = await cycle(['artifacts', 'download', 'art_1', '--out', out], { env });
      expect(resumed.code, resumed.stderr).toBe(0);
      expect(ranges[1]).toBe('bytes=4000-');
      expect(Buffer.compare(await fs.readFile(path.join(out, 'data.bin')), body)).toBe(0);
      expect(await fs.readdir(out)).toEqual(['data.bin']);
    } finally {
      flaky.close();
    }
  });
});
