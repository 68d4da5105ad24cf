import { createHash } from 'node:crypto';
import { isInside } from '../util/paths.js';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Context } from '../context.js';
import { CycleError, ExitCode, usageError } from '../errors.js';
import { connect, type ConnectFlags } from '../api/connect.js';
import type { ApiClient } from '../api/client.js';
import type { Artifact } from '../api/schemas.js';
import { formatBytes, formatTable } from '../ui/ui.js';

export async function list(options: ConnectFlags & { job?: string; json: boolean }, ctx: Context): Promise<number> {
  const api = await connect(ctx, options);
  const artifacts = await api.artifacts(options.job ? { job: options.job } : {});
  if (options.json) ctx.ui.json(artifacts);
  else if (!ctx.io.stdout.isTTY) for (const a of artifacts) ctx.ui.out(`${a.id}\t${a.job_id}\t${a.size}\t${a.name}`);
  else ctx.ui.out(formatTable(['ARTIFACT', 'JOB', 'SIZE', 'NAME'], artifacts.map((a) => [a.id, a.job_id, formatBytes(a.size), a.name])));
  return ExitCode.ok;
}

export interface DownloadOptions extends ConnectFlags {
  ids: string[];
  job?: string;
  out?: string;
  json: boolean;
}

/**
 * Downloads artifacts into --out: written to a part file and renamed when whole, checked
 * against the size and sha256 the server gives, resumed from the part file, and never outside
 * --out whatever name the server sends.
 */
export async function download(options: DownloadOptions, ctx: Context): Promise<number> {
  if (options.ids.length === 0 && !options.job) throw usageError('which artifacts? give artifact ids, or --job ID for all of a job');
  if (options.ids.length > 0 && options.job) throw usageError('give artifact ids or --job, not both');
  const api = await connect(ctx, options);
  const outDir = path.resolve(ctx.cwd, options.out ?? '.');
  await fs.mkdir(outDir, { recursive: true });
  let wanted: Array<{ id: string; name?: string }>;
  if (options.job) {
    const artifacts = await api.artifacts({ job: options.job });
    if (artifacts.length === 0) ctx.ui.info(`job ${options.job} has no artifacts`);
    wanted = await namesForJob(api, options.job, artifacts);
  } else wanted = options.ids.map((id) => ({ id }));
  const done: Array<{ id: string; path: string; size: number; sha256: string | null; skipped: boolean }> = [];
  for (const item of wanted) done.push(await downloadOne(api, item, outDir, ctx));
  if (options.json) ctx.ui.json(done);
  else for (const d of done) ctx.ui.out(d.path);
  return ExitCode.ok;
}

/** Names inside --out for a job's artifacts; task-N/ folders when two tasks made the same name. */
async function namesForJob(api: ApiClient, jobId: string, artifacts: Artifact[]): Promise<Array<{ id: string; name: string }>> {
  const counts = new Map<string, number>();
  for (const a of artifacts) counts.set(a.name, (counts.get(a.name) ?? 0) + 1);
  if (![...counts.values()].some((n) => n > 1)) return artifacts.map((a) => ({ id: a.id, name: a.name }));
  const index = new Map((await api.tasks(jobId)).map((t) => [t.id, t.index]));
  return artifacts.map((a) => ({ id: a.id, name: `task-${index.get(a.task_id) ?? a.task_id}/${a.name}` }));
}

async function downloadOne(api: ApiClient, item: { id: string; name?: string }, outDir: string, ctx: Context): Promise<{ id: string; path: string; size: number; sha256: string | null; skipped: boolean }> {
  const part = path.join(outDir, `.${item.id}.cycle-part`);
  const have = await fs.stat(part).then((s) => s.size).catch(() => 0);
  const response = await api.downloadArtifact(item.id, have, ctx.signal);
  const header = (name: string): string | undefined => {
    const value = response.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  const rawName = item.name ?? decodeURIComponent(header('x-artifact-name') ?? item.id);
  const { relative, changed } = safeRelativeName(rawName, item.id);
  if (changed) ctx.ui.warn(`artifact ${item.id}: the server named it ${JSON.stringify(rawName)}; saved as ${relative} inside ${outDir}`);
  const target = path.join(outDir, relative);
  if (!isInside(outDir, target, false)) throw new CycleError({ message: `artifact ${item.id}: refusing the name ${JSON.stringify(rawName)}, which leads outside ${outDir}`, exitCode: ExitCode.failure });
  const size = Number(header('x-artifact-size') ?? (response.status === 200 ? header('content-length') : undefined));
  const sha256 = header('x-checksum-sha256') ?? null;
  // 416: the part file already holds every byte (a run stopped before renaming it); checked below like any download.
  const complete = response.status === 416 && have > 0;
  const resuming = (response.status === 206 || complete) && have > 0;
  const hash = createHash('sha256');
  if (resuming) for await (const chunk of createReadStream(part)) hash.update(chunk as Buffer);
  else if (have > 0) await fs.rm(part, { force: true }); // the server sent it whole: start over
  const hasher = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  try {
    if (complete) await response.body.dump();
    else await pipeline(response.body, hasher, createWriteStream(part, { flags: resuming ? 'a' : 'w' }));
  } catch (error) {
    // The part file stays: the next run resumes from it.
    throw new CycleError({ message: `artifact ${item.id}: the download broke off (${(error as Error).message}); run the command again to resume`, exitCode: ExitCode.network });
  }
  const written = (await fs.stat(part)).size;
  const digest = hash.digest('hex');
  if (Number.isFinite(size) && written !== size) {
    await fs.rm(part, { force: true });
    throw new CycleError({ message: `artifact ${item.id}: got ${written} bytes, the server said ${size}`, hint: 'run the command again', exitCode: ExitCode.network });
  }
  if (sha256 && digest !== sha256) {
    await fs.rm(part, { force: true });
    throw new CycleError({ message: `artifact ${item.id}: the checksum does not match (sha256 ${digest.slice(0, 12)}…, expected ${sha256.slice(0, 12)}…)`, hint: 'run the command again', exitCode: ExitCode.network });
  }
  await fs.mkdir(path.dirname(target), { recursive: true });
  await fs.rename(part, target);
  ctx.ui.info(`${resuming ? 'resumed' : 'downloaded'} ${relative} (${formatBytes(written)})`);
  return { id: item.id, path: target, size: written, sha256: digest, skipped: false };
}

/** A server-given name as a relative path that stays inside the folder: no "..", no root. */
export function safeRelativeName(name: string, fallback: string): { relative: string; changed: boolean } {
  const parts = name.split(/[\\/]+/).filter((part) => part !== '' && part !== '.' && part !== '..' && !/^[A-Za-z]:$/.test(part));
  const cleaned = parts.map((part) => part.replace(/[\0]/g, '')).filter(Boolean);
  const relative = cleaned.length ? cleaned.join('/') : fallback;
  return { relative, changed: relative !== name };
}
