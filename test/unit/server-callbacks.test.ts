import http from 'node:http';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/server/index.js';
import { client, startFakeDockerServer } from '../helpers/server.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { tempDir } from '../helpers/context.js';
import { rawTarGz, VALID_PROJECT } from '../helpers/tarballs.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A finished job's callback across restarts (docs/design.md, "Job callbacks"): the server is
 * stopped at each step of a delivery, as `kill -9` would leave its database there, and started
 * again on the same data folder; a receiver on 127.0.0.1 counts what it is sent.
 */

interface Received {
  delivery: string | undefined;
  idempotencyKey: string | undefined;
  body: { event: string; delivery?: string; job: { id: string; status: string } };
  /** The job's callback_state in the database when the POST arrived. */
  stateAtArrival: string | null;
}

const docker = new FakeDocker();
const received: Received[] = [];
/** How the receiver answers the next POST (204 unless a test says otherwise). */
let answer: (res: http.ServerResponse) => void = (res) => res.writeHead(204).end();
let dataDir: string;
let receiver: http.Server;
let callbackUrl: string;
let server: RunningServer | undefined;

const dbPath = (): string => path.join(dataDir, 'cycle.db');

/** Reads (or, with `set`, changes) the database beside the server (WAL: both see committed rows). */
function withDb<T>(use: (db: Database.Database) => T): T {
  const db = new Database(dbPath());
  try {
    return use(db);
  } finally {
    db.close();
  }
}
const callbackState = (jobId: string): string | null =>
  withDb((db) => (db.prepare('SELECT callback_state FROM jobs WHERE id = ?').get(jobId) as { callback_state: string | null }).callback_state);

const start = async (): Promise<RunningServer> => (server = await startFakeDockerServer(docker, { dataDir, callbackBaseDelayMs: 10 }));
async function stop(): Promise<void> {
  await server?.close();
  server = undefined;
}
/** Starts the server again and lets it settle every callback it resumes, then stops it (a stop waits for a POST in flight). */
async function restartAndSettle(jobId: string): Promise<void> {
  await start();
  await waitFor(
    () => ['delivered', 'failed'].includes(callbackState(jobId) ?? ''),
    20_000,
    `job ${jobId}'s callback to settle`,
    () => String(callbackState(jobId)),
  );
  await stop();
}
const deliveriesOf = (jobId: string): Received[] => received.filter((r) => r.body.job.id === jobId);

async function finishedJob(): Promise<string> {
  const job = await client(server!).submit({ project: 'demo', callback_url: callbackUrl });
  expect((await client(server!).waitJob(job.id, 30_000)).status).toBe('completed');
  return job.id;
}

/** A finished job whose callback was delivered and recorded delivered; then the server stops. */
async function deliveredThenStopped(): Promise<string> {
  const jobId = await finishedJob();
  await waitFor(() => callbackState(jobId) === 'delivered', 20_000, 'the callback to be recorded delivered');
  await stop();
  return jobId;
}

beforeAll(async () => {
  dataDir = await tempDir('cycle-callbacks-');
  receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const parsed = JSON.parse(body) as Received['body'];
      received.push({
        delivery: req.headers['x-cycle-delivery'] as string | undefined,
        idempotencyKey: req.headers['idempotency-key'] as string | undefined,
        body: parsed,
        stateAtArrival: callbackState(parsed.job.id),
      });
      answer(res);
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  callbackUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/done`;
  await start();
  expect((await client(server!).call('POST', '/api/v1/projects/demo/push', rawTarGz(VALID_PROJECT))).status).toBe(201);
  await stop();
});
afterAll(() => receiver.close());
// Each test starts with the server running; a test's failure leaves the next one a running server.
beforeEach(async () => {
  answer = (res) => res.writeHead(204).end();
  await start();
});
afterEach(stop);

describe('job callbacks across restarts', () => {
  it('is sent once, with a delivery id, recorded as delivering before the POST and delivered after its answer', async () => {
    const jobId = await finishedJob();
    await waitFor(() => callbackState(jobId) === 'delivered', 20_000, 'the callback to be recorded delivered');
    const [first, ...more] = deliveriesOf(jobId);
    expect(more).toEqual([]);
    expect(first!.body).toMatchObject({ event: 'job.finished', job: { id: jobId, status: 'completed' } });
    expect(first!.delivery).toMatch(/\S/);
    expect(first!.idempotencyKey).toBe(first!.delivery);
    expect(first!.body.delivery).toBe(first!.delivery);
    expect(first!.stateAtArrival).toBe('delivering');
    // Delivered and recorded: a restart sends nothing.
    await stop();
    await start();
    await stop();
    expect(deliveriesOf(jobId)).toHaveLength(1);
  });

  it('killed after its last task ended but before the job finished: the restart finishes it and sends its callback once', async () => {
    const jobId = await deliveredThenStopped();
    const before = deliveriesOf(jobId).length;
    withDb((db) => db.prepare("UPDATE jobs SET status = 'running', finished_at = NULL, callback_state = 'pending' WHERE id = ?").run(jobId));
    await restartAndSettle(jobId);
    expect(deliveriesOf(jobId).length - before).toBe(1);
    expect(callbackState(jobId)).toBe('delivered');
  });

  it('killed after the job finished, before the POST: the restart sends it once', async () => {
    const jobId = await deliveredThenStopped();
    const before = deliveriesOf(jobId).length;
    withDb((db) => db.prepare("UPDATE jobs SET callback_state = 'pending' WHERE id = ?").run(jobId));
    await restartAndSettle(jobId);
    expect(deliveriesOf(jobId).length - before).toBe(1);
  });

  it('killed after the receiver took the POST, before `delivered` was written: sent again with the same delivery id', async () => {
    const jobId = await deliveredThenStopped();
    withDb((db) => db.prepare("UPDATE jobs SET callback_state = 'delivering' WHERE id = ?").run(jobId));
    await restartAndSettle(jobId);
    const all = deliveriesOf(jobId);
    expect(all).toHaveLength(2);
    // The receiver dedupes on the id: one delivery.
    expect(new Set(all.map((r) => r.delivery)).size).toBe(1);
    expect(all[0]!.delivery).toMatch(/\S/);
  });

  it('a POST answered while the server stops is recorded: the next start does not send it again', async () => {
    let release: (() => void) | undefined;
    const arrived = new Promise<void>((resolve) => {
      answer = (res) => {
        release = () => res.writeHead(204).end();
        resolve();
      };
    });
    const job = await client(server!).submit({ project: 'demo', callback_url: callbackUrl });
    await arrived;
    answer = (res) => res.writeHead(204).end();
    const closing = server!.close();
    server = undefined;
    release!();
    await closing;
    expect(callbackState(job.id)).toBe('delivered');
    await start();
    await stop();
    expect(deliveriesOf(job.id)).toHaveLength(1);
  });

  it('a retried POST (a 503 first) carries the same delivery id', async () => {
    let answered = 0;
    answer = (res) => res.writeHead(answered++ === 0 ? 503 : 204).end();
    const jobId = await finishedJob();
    await waitFor(() => callbackState(jobId) === 'delivered', 20_000, 'the callback to be recorded delivered');
    const all = deliveriesOf(jobId);
    expect(all).toHaveLength(2);
    expect(all[1]!.delivery).toBe(all[0]!.delivery);
    expect(all[0]!.delivery).toMatch(/\S/);
  });
});
