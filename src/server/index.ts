import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { CycleError } from '../errors.js';
import type { DockerDriver } from '../docker/driver.js';
import { writeFileAtomic } from '../util/fs.js';
import { takeLockFile } from '../util/lock.js';
import type { Exec } from '../util/exec.js';
import type { Env } from '../ui/streams.js';
import { systemClock, type Clock } from '../context.js';
import { Account, DEFAULT_PRICE_PER_TASK_SECOND_USD, DEFAULT_QUOTE_TIMEOUT_S } from './account.js';
import { createRouter } from './http/routes.js';
import { JobCallbacks } from './callbacks.js';
import { openDatabase } from './db.js';
import { EventLog } from './events.js';
import { StreamGate } from './http/sse.js';
import { sessionCookieName, SqliteSessionStore, WebSessions } from './web/sessions.js';
import { createHttpServer } from './http/router.js';
import { JobService } from './jobs.js';
import { layout as dataLayout, type Layout } from './layout.js';
import {
  DEFAULT_HTTP_LIMITS,
  DEFAULT_MAX_COMPRESSION_RATIO,
  DEFAULT_PROJECT_QUOTA_BYTES,
  DEFAULT_SERVER_QUOTA_BYTES,
  DEFAULT_TREE_LIMITS,
  type HttpLimits,
  type TreeLimits,
} from './limits.js';
import { ProjectService } from './projects.js';
import { loadRecipes, RecipeService, type Recipe } from './recipes.js';
import { DEFAULT_LEASE_MS, WorkQueue } from './queue/work-queue.js';
import { MachineRegistry } from './machines/registry.js';
import { JobStates } from './state.js';
import { VolumeService } from './volumes.js';
import { InProcessQueueClient } from './worker/queue-client.js';
import { LOCAL_WORKER_ID } from './queue/lease.js';
import { LocalTaskInputs } from './worker/task-inputs.js';
import { Worker } from './worker/worker.js';
import { MachineWork } from './machines/work.js';
import { addDaemonRoutes } from './http/daemon-routes.js';
import { DEFAULT_MAX_TASK_ARTIFACT_BYTES } from './worker/worker.js';
import { DEFAULT_MAX_ARTIFACT_BYTES, UploadService } from './uploads.js';

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
  /** The account's opening balance in dollars (init needs $5; jobs hold their quote); unlimited unless set. */
  balance?: number;
  /** What a second of a task's run time costs (docs/api.md, Billing). */
  pricePerTaskSecondUsd?: number;
  maxUploadBytes?: number;
  /** The cap on one `POST /api/v1/artifacts` (2 GB by default, as Computalot documents). */
  maxArtifactBytes?: number;
  maxExtractBytes?: number;
  /** The cap on what one task's captured artifacts take (20 GiB by default; sparse files count their apparent size). */
  maxTaskArtifactBytes?: number;
  maxFiles?: number;
  /** Depth, name length and symlinks of a pushed tree (src/server/limits.ts has the defaults). */
  treeLimits?: Partial<TreeLimits>;
  /** Tar bytes per gzip byte of a push (`--max-compression-ratio`). */
  maxCompressionRatio?: number;
  /** Disk the stored pushes of one project may take (`--project-quota`). */
  projectQuotaBytes?: number;
  /** Disk the stored pushes of all projects may take (`--server-quota`). */
  serverQuotaBytes?: number;
  heartbeatMs?: number;
  callbackBaseDelayMs?: number;
  /** How long a worker's lease lives without a renewal (30 s unless set; docs/design.md, "The work queue and the worker"). */
  leaseMs?: number;
  /** Runs task timeouts and stamps every stored time (the system's clock unless set; tests advance a fake one). */
  clock?: Clock;
  /** Connection, timeout and stream limits (src/server/limits.ts has the defaults). */
  httpLimits?: Partial<HttpLimits>;
  /** The operator's recipes: one sub-folder each (docs/api.md, "Recipes"); none when unset. */
  recipesDir?: string;
  /** Run tasks on this machine too (the default); false: the server only coordinates (`--no-local-worker`). */
  localWorker?: boolean;
  /** Serve HTTPS with this certificate and key (PEM), `--tls-cert` / `--tls-key`. */
  tls?: { cert: Buffer; key: Buffer };
}

export interface RunningServer {
  url: string;
  token: string;
  /** True when this start created the token (it is shown once). */
  tokenCreated: boolean;
  dataDir: string;
  /** A one-time sign-in link for the web page (docs/api.md, "The web page"). */
  signInLink(): string;
  /** Tasks running now: a shutdown stops (and later reruns) them. */
  runningTasks(): number;
  close(): Promise<void>;
}

/** Starts the local backend: state in SQLite under the data folder, tasks in Docker. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  // Read before anything is written: a bad recipe stops the start, naming its file and field.
  const loadedRecipes: Recipe[] = options.recipesDir ? await loadRecipes(options.recipesDir) : [];
  const layout = dataLayout(options.dataDir);
  await privateDataFolder(layout);
  // One server per data folder: a second one would wipe the first one's uploads and tasks in progress.
  const unlock = await lockDataFolder(layout);
  try {
    return await startLocked(options, loadedRecipes, layout, unlock);
  } catch (error) {
    await unlock();
    throw error;
  }
}

async function startLocked(options: ServerOptions, loadedRecipes: Recipe[], layout: Layout, unlock: () => Promise<void>): Promise<RunningServer> {
  // Pushes and tasks in progress when the server stopped left their temp files: nothing there is live (the lock says so).
  await fs.rm(layout.tmp, { recursive: true, force: true });
  await fs.mkdir(layout.tmp, { mode: 0o700 });
  const { token, created } = await loadToken(layout.token);
  const db = openDatabase(layout.db);
  const events = new EventLog(db, options.clock);
  let gpu: Promise<{ ok: boolean; reason?: string; cuda?: string }> | undefined;
  const probeGpu = (): Promise<{ ok: boolean; reason?: string; cuda?: string }> =>
    (gpu ??= import('../docker/gpu.js').then(async ({ probeNvidia }) => {
      const probe = await probeNvidia(options.exec);
      return probe.ok
        ? { ok: true, ...(probe.report.cudaVersion ? { cuda: probe.report.cudaVersion } : {}) }
        : { ok: false, reason: `${probe.reason}: ${probe.detail.split('\n')[0]}` };
    }));
  const account = new Account({
    db,
    clock: options.clock,
    openingBalanceUsd: options.balance ?? Number.POSITIVE_INFINITY,
    pricePerTaskSecondUsd: options.pricePerTaskSecondUsd ?? DEFAULT_PRICE_PER_TASK_SECOND_USD,
    defaultQuoteTimeoutS: DEFAULT_QUOTE_TIMEOUT_S,
  });
  const treeLimits: TreeLimits = { ...DEFAULT_TREE_LIMITS, ...options.treeLimits };
  const projects = new ProjectService({
    db,
    clock: options.clock,
    events,
    layout,
    docker: options.docker,
    limits: {
      maxUploadBytes: options.maxUploadBytes ?? 4 * 1024 ** 3,
      maxBytes: options.maxExtractBytes ?? 8 * 1024 ** 3,
      maxFiles: options.maxFiles ?? 200_000,
      ...treeLimits,
      maxCompressionRatio: options.maxCompressionRatio ?? DEFAULT_MAX_COMPRESSION_RATIO,
      projectQuotaBytes: options.projectQuotaBytes ?? DEFAULT_PROJECT_QUOTA_BYTES,
      serverQuotaBytes: options.serverQuotaBytes ?? DEFAULT_SERVER_QUOTA_BYTES,
    },
    checkInit: (project) => account.checkInit(project),
    log: options.log,
    env: options.env ?? {},
  });
  let queue: WorkQueue | undefined;
  // The machine pool (issue 20): a machine whose heartbeat is older than a lease's life is offline.
  const machines = new MachineRegistry({ db, clock: options.clock, leaseMs: options.leaseMs ?? DEFAULT_LEASE_MS, leases: () => queue });
  const states = new JobStates({ db, events, layout, clock: options.clock });
  // A finished job's hold is settled: charged for what ran, the rest released.
  states.onJobFinished((job) => account.settle(job.id));
  const jobs = new JobService({
    db,
    clock: options.clock,
    states,
    projects,
    layout,
    // A GPU job is accepted when this server or an enrolled machine has a GPU.
    hasGpu: async () => machines.anyGpu() || (await probeGpu()).ok,
    onSubmitted: () => queue?.kick(),
  });
  const serverKey = createHash('sha256').update(options.dataDir).digest('hex').slice(0, 16);
  const clock = options.clock ?? systemClock;
  queue = new WorkQueue({
    db,
    events,
    states,
    jobs,
    projects,
    layout,
    clock,
    log: options.log,
    machines,
    ...(options.leaseMs !== undefined ? { leaseMs: options.leaseMs } : {}),
  });
  // A finished job's callback, once per job as far as a crash allows (callbacks.ts).
  const callbacks = new JobCallbacks({
    db,
    states,
    jobs,
    clock,
    log: options.log,
    ...(options.callbackBaseDelayMs !== undefined ? { baseDelayMs: options.callbackBaseDelayMs } : {}),
  });
  // This machine's worker: the one way a task runs (workers on other machines use the same code over HTTP).
  const worker = new Worker({
    queue: new InProcessQueueClient(queue),
    inputs: new LocalTaskInputs({ db, layout, projects, jobs, treeLimits }),
    docker: options.docker,
    slots: options.workers,
    env: options.env ?? {},
    serverKey,
    clock,
    log: options.log,
    // An id no machine name can take (a machine's name has no ":"): a machine never acts on this worker's leases.
    offer: async () => ({ workerId: LOCAL_WORKER_ID, gpu: await probeGpu() }),
    scratchDir: layout.tmp,
    ...(options.maxTaskArtifactBytes !== undefined ? { maxTaskArtifactBytes: options.maxTaskArtifactBytes } : {}),
  });
  projects.recover();
  const recipes = new RecipeService({ recipes: loadedRecipes, projects, log: options.log });
  await recipes.register();
  queue.recover();
  callbacks.resume();
  if (options.localWorker !== false) await worker.removeLeftovers();
  const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS, ...options.httpLimits };
  const volumes = new VolumeService({ db, clock: options.clock, layout, maxBlobBytes: options.maxUploadBytes ?? 4 * 1024 ** 3, log: options.log });
  // Kept in the database: a restart keeps the web page signed in.
  const sessions = new WebSessions({ store: new SqliteSessionStore(db), clock: options.clock });
  const router = createRouter({
    sessions,
    token,
    db,
    clock: options.clock,
    account,
    uploads: new UploadService({ db, clock: options.clock, layout, maxBytes: options.maxArtifactBytes ?? DEFAULT_MAX_ARTIFACT_BYTES }),
    version: options.version,
    projects,
    recipes,
    jobs,
    queue,
    machines,
    volumes,
    events,
    heartbeatMs: options.heartbeatMs ?? 15_000,
    streams: new StreamGate(limits, options.log),
    log: options.log,
    hostPaths: [options.dataDir],
    baseUrl: () => url,
  });
  addDaemonRoutes(
    router,
    new MachineWork({
      auth: machines,
      queue,
      jobs,
      projects,
      volumes,
      db,
      layout,
      version: options.version,
      leaseMs: options.leaseMs ?? DEFAULT_LEASE_MS,
      maxTaskArtifactBytes: options.maxTaskArtifactBytes ?? DEFAULT_MAX_TASK_ARTIFACT_BYTES,
    }),
  );
  // This server's own address, for the URLs it hands out (set once it listens).
  let url = '';
  const server = createHttpServer(
    (req, res) => void router.handle(req, res),
    limits,
    (req) => router.authenticated(req),
    options.tls,
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  url = `${options.tls ? 'https' : 'http'}://${host}:${address.port}`;
  sessions.cookieName = sessionCookieName(address.port);
  const localWorker = options.localWorker !== false;
  if (localWorker) worker.start();
  let closing: Promise<void> | undefined;
  return {
    url,
    token,
    tokenCreated: created,
    dataDir: options.dataDir,
    signInLink: () => `${url}/signin?code=${sessions.issueCode().code}`,
    runningTasks: () => worker.runningCount,
    close: () =>
      (closing ??= (async () => {
        server.close();
        server.closeAllConnections();
        queue!.stop();
        await worker.stop();
        // After the worker: a job its stop finished keeps its callback pending for the next start.
        await callbacks.stop();
        // Lines still waiting for their file's open are written before the process goes.
        await states.logs.closeAll();
        db.close();
        await unlock();
      })()),
  };
}

/**
 * The data folder and the database are the owner's only (0700, 0600), also when the folder
 * existed before (mkdir's mode applies only to a folder it creates). SQLite gives its -wal and
 * -shm files the database's mode, so the database is made 0600 before SQLite opens it.
 */
async function privateDataFolder(layout: Layout): Promise<void> {
  await fs.mkdir(layout.dataDir, { recursive: true, mode: 0o700 });
  await fs.chmod(layout.dataDir, 0o700);
  await (await fs.open(layout.db, 'a', 0o600)).close();
  for (const file of [layout.db, `${layout.db}-wal`, `${layout.db}-shm`]) {
    await fs.chmod(file, 0o600).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }
}

/**
 * Takes the data folder's lock (`server.lock`, holding the server's pid): a second server on the
 * same folder stops with a message naming the folder and the running server's pid. A lock whose
 * process is gone (a `kill -9`) is stale and taken over. Returns the release.
 */
function lockDataFolder(layout: Layout): Promise<() => Promise<void>> {
  return takeLockFile(
    path.join(layout.dataDir, 'server.lock'),
    (pid) =>
      new CycleError({
        message: `another cycle server (pid ${pid}) is running on the data folder ${layout.dataDir}`,
        hint: `stop it first (kill ${pid}), or start this one with another --data-dir`,
      }),
  );
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
