import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Context } from '../context.js';
import { ExitCode, usageError } from '../errors.js';
import type { ServerCommandOptions } from './server.command.js';
import { parseByteSize } from '../util/size.js';

export async function run(options: ServerCommandOptions, ctx: Context): Promise<number> {
  const port = Number(options.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw usageError(`--port ${options.port}: expected a port number 0-65535`);
  const workers = options.workers === undefined ? Math.max(1, Math.min(4, os.cpus().length)) : Number(options.workers);
  if (!Number.isInteger(workers) || workers < 1 || workers > 256)
    throw usageError(`--workers ${options.workers}: expected a number of concurrent tasks, 1-256`);
  const balance = options.balance === undefined ? undefined : Number(options.balance);
  if (balance !== undefined && !Number.isFinite(balance)) throw usageError(`--balance ${options.balance}: expected dollars, e.g. 10`);
  const size = (flagName: string, text: string | undefined): number | undefined => {
    if (text === undefined) return undefined;
    const bytes = parseByteSize(text);
    if (bytes === undefined || bytes <= 0) throw usageError(`${flagName} ${text}: expected a size such as 500m, 20g or 1t`);
    return bytes;
  };
  const projectQuotaBytes = size('--project-quota', options.projectQuota);
  const serverQuotaBytes = size('--server-quota', options.serverQuota);
  const maxCompressionRatio = options.maxCompressionRatio === undefined ? undefined : Number(options.maxCompressionRatio);
  if (maxCompressionRatio !== undefined && !(Number.isFinite(maxCompressionRatio) && maxCompressionRatio >= 1))
    throw usageError(`--max-compression-ratio ${options.maxCompressionRatio}: expected a number of at least 1, e.g. 200`);
  const dataDir = path.resolve(ctx.cwd, options.dataDir ?? path.join(ctx.dataDir, 'server'));
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined))
    throw usageError(`${options.tlsCert === undefined ? '--tls-key' : '--tls-cert'} was given alone: HTTPS needs both --tls-cert FILE and --tls-key FILE`);
  const readPem = async (flagName: string, file: string): Promise<Buffer> =>
    fs.readFile(path.resolve(ctx.cwd, file)).catch((error: NodeJS.ErrnoException) => {
      throw usageError(`${flagName} ${file}: cannot read it (${error.code ?? error.message})`);
    });
  const tls =
    options.tlsCert !== undefined && options.tlsKey !== undefined
      ? { cert: await readPem('--tls-cert', options.tlsCert), key: await readPem('--tls-key', options.tlsKey) }
      : undefined;
  const { memoryLimitSetting } = await import('../runner/limits.js');
  memoryLimitSetting(ctx.env); // a bad CYCLE_MEMORY_LIMIT is told at start, not on every task
  const { startServer } = await import('../server/index.js');
  const log = (line: string): void => ctx.ui.info(`${new Date(ctx.clock.now()).toISOString()} ${line}`);
  const server = await startServer({
    host: options.host,
    port,
    dataDir,
    workers,
    version: ctx.version,
    docker: () => ctx.docker(),
    exec: ctx.exec,
    env: ctx.env,
    log,
    ...(balance !== undefined ? { balance } : {}),
    ...(projectQuotaBytes !== undefined ? { projectQuotaBytes } : {}),
    ...(serverQuotaBytes !== undefined ? { serverQuotaBytes } : {}),
    ...(maxCompressionRatio !== undefined ? { maxCompressionRatio } : {}),
    treeLimits: {
      ...(ctx.env.CYCLE_SERVER_MAX_DEPTH ? { maxDepth: Number(ctx.env.CYCLE_SERVER_MAX_DEPTH) } : {}),
      ...(ctx.env.CYCLE_SERVER_MAX_PATH_BYTES ? { maxPathBytes: Number(ctx.env.CYCLE_SERVER_MAX_PATH_BYTES) } : {}),
      ...(ctx.env.CYCLE_SERVER_MAX_SYMLINKS ? { maxSymlinks: Number(ctx.env.CYCLE_SERVER_MAX_SYMLINKS) } : {}),
    },
    localWorker: options.localWorker,
    ...(tls ? { tls } : {}),
    ...(ctx.env.CYCLE_SERVER_LEASE_MS ? { leaseMs: Number(ctx.env.CYCLE_SERVER_LEASE_MS) } : {}),
    ...(options.recipes !== undefined ? { recipesDir: path.resolve(ctx.cwd, options.recipes) } : {}),
    ...(ctx.env.CYCLE_SERVER_HEARTBEAT_MS ? { heartbeatMs: Number(ctx.env.CYCLE_SERVER_HEARTBEAT_MS) } : {}),
    ...(ctx.env.CYCLE_SERVER_MAX_UPLOAD_BYTES ? { maxUploadBytes: Number(ctx.env.CYCLE_SERVER_MAX_UPLOAD_BYTES) } : {}),
    ...(ctx.env.CYCLE_SERVER_PRICE_PER_TASK_SECOND ? { pricePerTaskSecondUsd: Number(ctx.env.CYCLE_SERVER_PRICE_PER_TASK_SECOND) } : {}),
    ...(ctx.env.CYCLE_SERVER_MAX_ARTIFACT_BYTES ? { maxArtifactBytes: Number(ctx.env.CYCLE_SERVER_MAX_ARTIFACT_BYTES) } : {}),
    ...(ctx.env.CYCLE_SERVER_MAX_TASK_ARTIFACT_BYTES ? { maxTaskArtifactBytes: Number(ctx.env.CYCLE_SERVER_MAX_TASK_ARTIFACT_BYTES) } : {}),
    ...(ctx.env.CYCLE_SERVER_MAX_FILES ? { maxFiles: Number(ctx.env.CYCLE_SERVER_MAX_FILES) } : {}),
    ...(ctx.env.CYCLE_SERVER_MAX_EXTRACT_BYTES ? { maxExtractBytes: Number(ctx.env.CYCLE_SERVER_MAX_EXTRACT_BYTES) } : {}),
    ...(ctx.env.CYCLE_SERVER_CALLBACK_DELAY_MS ? { callbackBaseDelayMs: Number(ctx.env.CYCLE_SERVER_CALLBACK_DELAY_MS) } : {}),
    httpLimits: {
      ...(ctx.env.CYCLE_SERVER_IDLE_TIMEOUT_MS ? { idleTimeoutMs: Number(ctx.env.CYCLE_SERVER_IDLE_TIMEOUT_MS) } : {}),
      ...(ctx.env.CYCLE_SERVER_HEADERS_TIMEOUT_MS ? { headersTimeoutMs: Number(ctx.env.CYCLE_SERVER_HEADERS_TIMEOUT_MS) } : {}),
      ...(ctx.env.CYCLE_SERVER_STREAM_STALL_MS ? { streamStallMs: Number(ctx.env.CYCLE_SERVER_STREAM_STALL_MS) } : {}),
      ...(ctx.env.CYCLE_SERVER_PUBLIC_BODY_TIMEOUT_MS ? { publicBodyTimeoutMs: Number(ctx.env.CYCLE_SERVER_PUBLIC_BODY_TIMEOUT_MS) } : {}),
    },
  });
  const tokenFile = path.join(dataDir, 'token');
  const running = options.localWorker ? `${workers} worker${workers === 1 ? '' : 's'}` : 'no local worker: tasks run on the machines of `cycle daemon run`';
  ctx.ui.info(`cycle server ${ctx.version} listening on ${server.url} (${running}; data in ${dataDir})`);
  if (server.tokenCreated) {
    ctx.ui.info('A bearer token was created. It is shown once, and kept (mode 0600) in ' + tokenFile + ':');
    ctx.ui.info(`  ${server.token}`);
  } else ctx.ui.info(`Token: in ${tokenFile}`);
  ctx.ui.info('Point cycle at this server:');
  ctx.ui.info(`  export CYCLE_API_URL=${server.url} CYCLE_TOKEN=$(cat ${tokenFile})`);
  ctx.ui.info(`  (or: cycle auth login --api-url ${server.url} --with-token < ${tokenFile})`);
  // The link on stdout (a script can read it); the words around it on stderr.
  ctx.ui.info('The web page (a one-time sign-in link, valid 10 minutes; `cycle dashboard` makes more):');
  ctx.ui.out(server.signInLink());
  ctx.ui.info('Stop with Ctrl-C (running tasks are stopped and run again on the next start).');
  await new Promise<void>((resolve) => {
    if (ctx.signal.aborted) resolve();
    ctx.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  const stopping = server.runningTasks();
  ctx.ui.info(
    stopping === 0
      ? 'shutting down (no task running)'
      : `shutting down: stopping ${stopping} running task${stopping === 1 ? '' : 's'} (their containers are removed; they run again on the next start)`,
  );
  await server.close();
  ctx.ui.info('stopped');
  return ExitCode.ok;
}
