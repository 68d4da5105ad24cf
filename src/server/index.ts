import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { DockerDriver } from '../docker/driver.js';
import { writeFileAtomic } from '../util/fs.js';
import type { Exec } from '../util/exec.js';
import type { Env } from '../ui/streams.js';
import { createRouter } from './app.js';
import { openDatabase } from './db.js';
import { EventLog } from './events.js';
import { JobService } from './jobs.js';
import { layout as dataLayout } from './layout.js';
import { ProjectService } from './projects.js';
import { Scheduler } from './scheduler.js';

export interface ServerOptions {
  host: string;
  port: number;
  dataDir: string;
  workers: number;
  version: string;
  docker: () => Promise<DockerDriver>;
  exec: Exec;
  /** Read for job containers' settings (CYCLE_MEMORY_LIMIT, CYCLE_DOCKER_NETWORK). */
  env?: Env;
  log: (line: string) => void;
  /** Dollars for `init` (which needs $5); unlimited unless set. */
  balance?: number;
  maxUploadBytes?: number;
  maxExtractBytes?: number;
  maxFiles?: number;
  heartbeatMs?: number;
  callbackBaseDelayMs?: number;
}

export interface RunningServer {
  url: string;
  token: string;
  /** True when this start created the token (it is shown once). */
  tokenCreated: boolean;
  dataDir: string;
  close(): Promise<void>;
}

/** Starts the local backend: state in SQLite under the data folder, tasks in Docker. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const layout = dataLayout(options.dataDir);
  await fs.mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const { token, created } = await loadToken(layout.token);
  const db = openDatabase(layout.db);
  const events = new EventLog(db);
  let gpu: Promise<{ ok: boolean; reason?: string; cuda?: string }> | undefined;
  const probeGpu = (): Promise<{ ok: boolean; reason?: string; cuda?: string }> =>
    (gpu ??= import('../docker/gpu.js').then(async ({ probeNvidia }) => {
      const probe = await probeNvidia(options.exec);
      return probe.ok ? { ok: true, ...(probe.report.cudaVersion ? { cuda: probe.report.cudaVersion } : {}) } : { ok: false, reason: `${probe.reason}: ${probe.detail.split('\n')[0]}` };
    }));
  const projects = new ProjectService({
    db,
    events,
    layout,
    docker: options.docker,
    limits: { maxUploadBytes: options.maxUploadBytes ?? 4 * 1024 ** 3, maxBytes: options.maxExtractBytes ?? 8 * 1024 ** 3, maxFiles: options.maxFiles ?? 200_000 },
    balance: options.balance ?? Number.POSITIVE_INFINITY,
    log: options.log,
  });
  let scheduler: Scheduler | undefined;
  const jobs = new JobService({ db, events, projects, layout, hasGpu: async () => (await probeGpu()).ok, onSubmitted: () => scheduler?.kick() });
  const serverKey = createHash('sha256').update(options.dataDir).digest('hex').slice(0, 16);
  scheduler = new Scheduler({
    db,
    events,
    jobs,
    projects,
    layout,
    docker: options.docker,
    workers: options.workers,
    env: options.env ?? {},
    serverKey,
    log: options.log,
    ...(options.callbackBaseDelayMs !== undefined ? { callbackBaseDelayMs: options.callbackBaseDelayMs } : {}),
    gpuProblem: async (cuda) => {
      const probe = await probeGpu();
      if (!probe.ok) return `the task needs a GPU, but this server has none (${probe.reason})`;
      if (cuda && probe.cuda) {
        const { compareVersions } = await import('../docker/cuda-drivers.js');
        if (compareVersions(probe.cuda, cuda) < 0) return `[job].cuda = "${cuda}" needs a newer driver: this server's supports CUDA ${probe.cuda}`;
      }
      return undefined;
    },
  });
  projects.recover();
  await scheduler.recover();
  const router = createRouter({ token, version: options.version, projects, jobs, scheduler, events, heartbeatMs: options.heartbeatMs ?? 15_000 });
  const server = http.createServer((req, res) => void router.handle(req, res));
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  scheduler.kick();
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${address.port}`,
    token,
    tokenCreated: created,
    dataDir: options.dataDir,
    close: () =>
      (closing ??= (async () => {
        server.close();
        server.closeAllConnections();
        await scheduler!.stop();
        db.close();
      })()),
  };
}

/** The bearer token: made on first start, kept 0600 in the data folder. */
async function loadToken(file: string): Promise<{ token: string; created: boolean }> {
  try {
    const token = (await fs.readFile(file, 'utf8')).trim();
    if (token.length >= 32) return { token, created: false };
  } catch {
    // first start
  }
  const token = `cyc_${randomBytes(24).toString('base64url')}`;
  await writeFileAtomic(file, token + '\n', 0o600);
  return { token, created: true };
}
