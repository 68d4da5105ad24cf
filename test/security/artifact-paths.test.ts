import fs from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { e2eCycleswapProject, removeProjectImages, type E2EProject } from '../helpers/e2e.js';
import { client, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { tempDir } from '../helpers/context.js';

// Issue 11.3 and the artifact route: names that come from users never become host paths, and any
// name can be downloaded.
let server: ServerProcess;
let api: ReturnType<typeof client>;
let project: E2EProject;
let hostDir: string;
let producer: string;
const UNICODE_NAME = 'résumé ✓ "q".txt';

beforeAll(async () => {
  hostDir = await tempDir('cycle-sec-host-');
  project = await e2eCycleswapProject();
  server = await startServerProcess({ workers: 2 });
  api = client(server);
  const pushed = await api.push(project.name, project.root);
  expect(pushed.status, JSON.stringify(pushed.body)).toBe(201);
  const job = await api.submit({
    project: project.name,
    runner_command: [
      'bash',
      '-c',
      `echo -n data > "$COMPUTALOT_ARTIFACT_DIR/a.txt"; echo -n unicode > "$COMPUTALOT_ARTIFACT_DIR/${UNICODE_NAME.replace(/"/g, '\\"')}"; echo '{}' > "$COMPUTALOT_TASK_RESULT"`,
    ],
    payload: {},
  });
  producer = job.id;
  expect((await api.waitJob(producer)).status).toBe('completed');
});

afterAll(async () => {
  await server.stop('SIGTERM');
  await removeProjectImages(project.root);
  await fs.rm(project.root, { recursive: true, force: true });
  await fs.rm(server.dataDir, { recursive: true, force: true }).catch(() => undefined);
  await fs.rm(hostDir, { recursive: true, force: true });
});

describe('_artifacts.download names', () => {
  const escape = (): string => `${'../'.repeat(40)}${hostDir.slice(1)}/planted`;
  const consumer = (payload: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    project: project.name,
    depends_on: [producer],
    runner_command: ['bash', '-c', `cat /computalot/artifacts/*/* > /dev/null; echo '{}' > "$COMPUTALOT_TASK_RESULT"`],
    payload,
    ...extra,
  });

  it('a name with "../" is refused with a 422 naming the field, and nothing is written outside', async () => {
    const answer = await api.call('POST', '/api/v1/jobs', consumer({ _artifacts: { download: { [escape()]: { job_id: producer, artifact: 'a.txt' } } } }));
    expect(answer.status).toBe(422);
    expect(answer.body.error.field).toBe('payload._artifacts.download');
    expect(answer.body.error.message).toContain('invalid name');
    if (answer.status === 201) await api.waitJob(answer.body.id);
    expect(await fs.readdir(hostDir)).toEqual([]);
  });

  it('a fan-out item bringing its own directive is checked too', async () => {
    const items = [{ n: 1 }, { n: 2, _artifacts: { download: { '..': { job_id: producer, artifact: 'a.txt' } } } }];
    const answer = await api.call('POST', '/api/v1/jobs', consumer({}, { fan_out: { items } }));
    expect(answer.status).toBe(422);
    expect(answer.body.error.message).toMatch(/^task 1: payload\._artifacts\.download: invalid name/);
    if (answer.status === 201) await api.waitJob(answer.body.id);
  });

  it('a plain name still works', async () => {
    const job = await api.submit({
      project: project.name,
      depends_on: [producer],
      runner_command: ['bash', '-c', 'printf \'{"got": "%s"}\' "$(cat /computalot/artifacts/input/a.txt)" > "$COMPUTALOT_TASK_RESULT"'],
      payload: { _artifacts: { download: { input: { job_id: producer, artifact: 'a.txt' } } } },
    });
    const done = await api.waitJob(job.id);
    expect(done.status, JSON.stringify(done)).toBe('completed');
    expect((await api.call('GET', `/api/v1/results/${job.id}`)).body.items[0].result).toEqual({ got: 'data' });
  });
});

describe('GET /api/v1/artifacts/:id', () => {
  it('serves a non-ASCII name with an RFC 6266 filename*', async () => {
    const artifacts = (await api.call('GET', `/api/v1/artifacts?job=${producer}`)).body.artifacts as Array<{ id: string; name: string }>;
    const artifact = artifacts.find((a) => a.name === UNICODE_NAME);
    expect(artifact, JSON.stringify(artifacts)).toBeDefined();
    const response = await fetch(`${server.url}/api/v1/artifacts/${artifact!.id}`, { headers: { authorization: `Bearer ${server.token}` } });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('unicode');
    const disposition = response.headers.get('content-disposition') ?? '';
    expect(disposition).toBe(`attachment; filename="r_sum_ _ _q_.txt"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%9C%93%20%22q%22.txt`);
    expect(decodeURIComponent(response.headers.get('x-artifact-name') ?? '')).toBe(UNICODE_NAME);
  });
});
