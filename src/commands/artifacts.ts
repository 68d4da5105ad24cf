import { createHash } from 'node:crypto';
import { joinInside } from '../util/paths.js';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Context } from '../context.js';
import { CycleError, errnoCode, ExitCode, usageError } from '../errors.js';
import { unexpectedAnswer, type ApiClient } from '../api/client.js';
import { artifactIdOf, artifactNameOf, jobIdOf, type ArtifactView } from '../api/schemas.js';
import { formatBytes, formatTable } from '../ui/ui.js';
import type { DownloadOptions, ListOptions, UploadOptions } from './artifacts.command.js';
import type { PullOptions } from './job/pull.command.js';
import { sha256File } from '../util/fs.js';
import { containedStat, ExistsError, openNoFollow, placeContained, refusedNameReason, UnsafePathError } from '../util/contained.js';
import { isTerminalJobStatus } from '../api/schemas.js';

export async function list(options: ListOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const artifacts = await api.artifacts(options.job ? { job: options.job } : {});
  // Each listed artifact has an id (the client checks); the rest is `-` where the server left it out.
  const rows = artifacts.map((a) => ({ id: artifactIdOf(a) ?? '-', job: a.job_id ?? '-', size: a.size ?? undefined, name: artifactNameOf(a) ?? '-' }));
  if (options.json) ctx.ui.json(artifacts);
  else if (!ctx.io.stdout.isTTY) for (const a of rows) ctx.ui.out(`${a.id}\t${a.job}\t${a.size ?? '-'}\t${a.name}`);
  else
    ctx.ui.out(
      formatTable(
        ['ARTIFACT', 'JOB', 'SIZE', 'NAME'],
        rows.map((a) => [a.id, a.job, a.size === undefined ? '-' : formatBytes(a.size), a.name]),
      ),
    );
  return ExitCode.ok;
}

/**
 * Downloads artifacts into --out (default: `./<job id>/` for --job, `./artifacts/` for ids, a
 * folder of their own so that no artifact lands among the user's files): written to a part file
 * and put in place when whole, checked against the size and sha256 the server gives, resumed from
 * the part file, and never outside --out whatever name the server sends (src/util/contained.ts:
 * no link followed, no `.git/…`, no file replaced without --overwrite).
 */
export async function download(options: DownloadOptions, ctx: Context): Promise<number> {
  if (options.ids.length === 0 && !options.job) throw usageError('which artifacts? give artifact ids, or --job ID for all of a job');
  if (options.ids.length > 0 && options.job) throw usageError('give artifact ids or --job, not both');
  for (const id of options.ids) {
    if (!ARTIFACT_ID_PATTERN.test(id))
      throw usageError(`invalid artifact id ${JSON.stringify(id)}: expected ${ARTIFACT_ID_RULE}, e.g. art_0123abc (see \`cycle artifacts list\`)`);
  }
  // The job id names the default folder: the same safe characters as an artifact id.
  if (options.job && options.out === undefined && !ARTIFACT_ID_PATTERN.test(options.job))
    throw usageError(`invalid job id ${JSON.stringify(options.job)}: expected ${ARTIFACT_ID_RULE}, e.g. job_0123abc (see \`cycle job list\`)`);
  const api = await ctx.api(options);
  const outDir = path.resolve(ctx.cwd, options.out ?? options.job ?? DEFAULT_IDS_FOLDER);
  await fs.mkdir(outDir, { recursive: true });
  let wanted: Array<{ id: string; name?: string }>;
  if (options.job) {
    const artifacts = await api.artifacts({ job: options.job });
    if (artifacts.length === 0) ctx.ui.info(`job ${options.job} has no artifacts`);
    wanted = await namesForJob(api, options.job, artifacts);
  } else wanted = options.ids.map((id) => ({ id }));
  const done: Downloaded[] = [];
  const refused: Refusal[] = [];
  for (const item of wanted) {
    // An id the server listed becomes part of a file name (the part file): check it like a typed one.
    if (!ARTIFACT_ID_PATTERN.test(item.id))
      throw new CycleError({
        message: `the server listed an artifact with the invalid id ${JSON.stringify(item.id)} (expected ${ARTIFACT_ID_RULE}): refusing to download it`,
        hint: 'check that --api-url / CYCLE_API_URL is the server you mean',
        exitCode: ExitCode.network,
      });
    const result = await downloadOne(api, item, outDir, ctx, options.overwrite === true);
    if ('refused' in result) refused.push(result);
    else done.push(result);
  }
  if (options.json) ctx.ui.json(done);
  else for (const d of done) ctx.ui.out(d.path);
  throwRefusals(refused, outDir);
  return ExitCode.ok;
}

/** Where `artifacts download ID…` writes without --out. */
const DEFAULT_IDS_FOLDER = 'artifacts';

type Downloaded = { id: string; path: string; size: number; sha256: string | null; skipped: boolean };
/** An artifact not written: its name is refused, or a file is in its place. */
type Refusal = { id: string; refused: UnsafePathError };

/** Artifacts whose names were refused were skipped (the others are written): one error names them all. */
function throwRefusals(refused: Refusal[], outDir: string): void {
  if (refused.length === 0) return;
  const exists = refused.some((r) => r.refused instanceof ExistsError);
  throw new CycleError({
    message: `${refused.length} artifact${refused.length === 1 ? '' : 's'} not written in ${outDir} (the others were):`,
    details: refused.map((r) => `${r.id}: ${r.refused.message}`),
    hint: exists
      ? 'move the file away, or pass --overwrite to replace it (a folder, a link on the way or a refused name is never written)'
      : 'cycle writes no artifact through a symbolic link or under a name such as .git/…; download into an empty folder (--out DIR) and look at what the job made',
    exitCode: ExitCode.failure,
  });
}

/**
 * `job pull ID`: the job's artifacts so far into --out (default `./<id>/`), skipping those already
 * there whole (same size and sha256), so a second pull fetches only what is new. Works while
 * the job runs: it takes what the server has captured until now.
 */
export async function pull(options: PullOptions, ctx: Context): Promise<number> {
  // The id names the default folder: the same safe characters as an artifact id.
  if (!ARTIFACT_ID_PATTERN.test(options.id))
    throw usageError(`invalid job id ${JSON.stringify(options.id)}: expected ${ARTIFACT_ID_RULE}, e.g. job_0123abc (see \`cycle job list\`)`);
  const api = await ctx.api(options);
  const job = await api.getJob(options.id);
  const jobId = jobIdOf(job);
  const outDir = path.resolve(ctx.cwd, options.out ?? options.id);
  await fs.mkdir(outDir, { recursive: true });
  const artifacts = await api.artifacts({ job: jobId });
  const byId = new Map(artifacts.map((a) => [artifactIdOf(a), a]));
  const done: Downloaded[] = [];
  const refused: Refusal[] = [];
  for (const item of await namesForJob(api, jobId, artifacts)) {
    if (!ARTIFACT_ID_PATTERN.test(item.id))
      throw new CycleError({
        message: `the server listed an artifact with the invalid id ${JSON.stringify(item.id)} (expected ${ARTIFACT_ID_RULE}): refusing to download it`,
        hint: 'check that --api-url / CYCLE_API_URL is the server you mean',
        exitCode: ExitCode.network,
      });
    const listed = byId.get(item.id);
    // Without a name, size and sha256 from the list, the local copy cannot be checked: fetched again.
    if (listed && item.name !== undefined && typeof listed.size === 'number' && listed.sha256) {
      const { relative } = safeRelativeName(item.name, item.id);
      const same = refusedNameReason(relative) === undefined && (await sameFile(outDir, relative, listed.size, listed.sha256));
      if (same) {
        done.push({ id: item.id, path: path.join(outDir, relative), size: listed.size, sha256: listed.sha256, skipped: true });
        continue;
      }
    }
    const result = await downloadOne(api, item, outDir, ctx, options.overwrite === true);
    if ('refused' in result) refused.push(result);
    else done.push(result);
  }
  const fetched = done.filter((d) => !d.skipped).length;
  const running = !isTerminalJobStatus(job.status);
  if (options.json) ctx.ui.json({ job_id: jobId, status: job.status, out: outDir, artifacts: done });
  else {
    for (const d of done) if (!d.skipped) ctx.ui.out(d.path);
    ctx.ui.info(
      `${jobId} (${job.status}): ${fetched} downloaded, ${done.length - fetched} already in ${outDir}${running ? '; the job still runs: pull again for what comes next' : ''}`,
    );
  }
  throwRefusals(refused, outDir);
  return ExitCode.ok;
}

/**
 * A local file that is already this artifact: a regular file (not a link, none on the way) of its
 * size and sha256.
 */
async function sameFile(outDir: string, relative: string, size: number, sha256: string): Promise<boolean> {
  const stat = await containedStat(outDir, relative).catch(() => undefined);
  if (!stat?.isFile() || stat.size !== size) return false;
  return (await sha256File(path.join(outDir, relative), stat.size)) === sha256;
}

/**
 * Names inside --out for a job's artifacts; task-N/ folders when two tasks made the same name.
 * An artifact listed without a name takes the one its download gives (X-Artifact-Name).
 */
async function namesForJob(api: ApiClient, jobId: string, artifacts: ArtifactView[]): Promise<Array<{ id: string; name?: string }>> {
  const listed = artifacts.map((a) => ({ id: artifactIdOf(a) ?? '', name: artifactNameOf(a), taskId: a.task_id ?? undefined }));
  const counts = new Map<string, number>();
  for (const a of listed) if (a.name !== undefined) counts.set(a.name, (counts.get(a.name) ?? 0) + 1);
  const plain = listed.map(({ id, name }) => (name === undefined ? { id } : { id, name }));
  if (![...counts.values()].some((n) => n > 1)) return plain;
  const index = new Map((await api.tasks(jobId)).map((t) => [t.id ?? t.task_id, t.index]));
  return listed.map(({ id, name, taskId }) => {
    if (name === undefined) return { id };
    const task = taskId === undefined ? undefined : (index.get(taskId) ?? taskId);
    return { id, name: task === undefined ? name : `task-${task}/${name}` };
  });
}

async function downloadOne(
  api: ApiClient,
  item: { id: string; name?: string },
  outDir: string,
  ctx: Context,
  overwrite: boolean,
): Promise<Downloaded | Refusal> {
  const part = partFile(outDir, item.id);
  // Only a regular file is resumed; anything else at the part file's name is refused when opened.
  const have = await fs
    .lstat(part)
    .then((s) => (s.isFile() ? s.size : 0))
    .catch(() => 0);
  // A listed name is checked before a byte is fetched; a name from the download's header below.
  if (item.name !== undefined) {
    const refused = await refusal(outDir, safeRelativeName(item.name, item.id).relative);
    if (refused) return { id: item.id, refused };
  }
  const response = await api.downloadArtifact(item.id, have, ctx.signal);
  const header = (name: string): string | undefined => {
    const value = response.headers[name];
    return Array.isArray(value) ? value[0] : value;
  };
  // A redirect (which would take the token elsewhere if followed), a 204 or any other status is
  // not the artifact: nothing is saved. A 416 to a resume means the part file is already whole.
  if (response.status !== 200 && response.status !== 206 && !(response.status === 416 && have > 0)) {
    await response.body.dump().catch(() => undefined);
    throw new CycleError({
      message: `artifact ${item.id}: the server answered HTTP ${response.status}${header('location') ? ` (a redirect)` : ''}, not the artifact's bytes; nothing was saved`,
      hint: 'cycle downloads only from the API server itself; check --api-url / CYCLE_API_URL',
      exitCode: ExitCode.network,
    });
  }
  const rawName = item.name ?? decodeName(header('x-artifact-name')) ?? item.id;
  const { relative, changed } = safeRelativeName(rawName, item.id);
  if (changed) ctx.ui.warn(`artifact ${item.id}: the server named it ${JSON.stringify(rawName)}; saved as ${relative} inside ${outDir}`);
  if (item.name === undefined) {
    const refused = await refusal(outDir, relative);
    if (refused) {
      await response.body.dump().catch(() => undefined);
      return { id: item.id, refused };
    }
  }
  // 416: the part file already holds every byte (a run stopped before renaming it); checked below like any download.
  const complete = response.status === 416 && have > 0;
  const resuming = (response.status === 206 || complete) && have > 0;
  const size = declaredSize(response.status, header);
  if (size === undefined) {
    await response.body.dump().catch(() => undefined);
    throw new CycleError({
      message: `artifact ${item.id}: the server's answer does not say how big the artifact is (no X-Artifact-Size or Content-Length); nothing was saved`,
      hint: 'the server may speak another version of the API; check --api-url / CYCLE_API_URL',
      exitCode: ExitCode.network,
    });
  }
  if (size === 0 && !resuming && header('x-artifact-size') === undefined) {
    await response.body.dump().catch(() => undefined);
    throw new CycleError({
      message: `artifact ${item.id}: the server's answer is empty and does not say the artifact is (no X-Artifact-Size: 0); nothing was saved`,
      hint: 'check --api-url / CYCLE_API_URL, and run the command again',
      exitCode: ExitCode.network,
    });
  }
  const sha256 = header('x-checksum-sha256') ?? null;
  const hash = createHash('sha256');
  if (resuming) for await (const chunk of createReadStream(part)) hash.update(chunk as Buffer);
  else await fs.rm(part, { force: true }); // the server sent it whole (or nothing was there): start over
  let received = resuming ? have : 0;
  // Counted as it arrives: a server sending more than it declared is stopped, not written on.
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > size) return callback(new TooLong());
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  try {
    if (complete) await response.body.dump();
    else {
      // O_NOFOLLOW: a link put at the part file's name is not written through.
      const handle = await openNoFollow(part, resuming ? 'append' : 'truncate');
      await pipeline(response.body, counter, handle.createWriteStream());
    }
  } catch (error) {
    if (error instanceof UnsafePathError) {
      await response.body.dump().catch(() => undefined);
      return { id: item.id, refused: new UnsafePathError(path.basename(part), error.reason) };
    }
    if (error instanceof TooLong) {
      await fs.rm(part, { force: true });
      throw new CycleError({
        message: `artifact ${item.id}: the server sent more than the ${size} bytes it declared; nothing was saved`,
        hint: 'run the command again',
        exitCode: ExitCode.network,
      });
    }
    if (ctx.signal.aborted)
      throw new CycleError({
        message: `interrupted: the part file ${path.basename(part)} stays in ${outDir}; run the command again to resume`,
        exitCode: ExitCode.interrupted,
      });
    // The part file stays: the next run resumes from it.
    throw new CycleError({
      message: `artifact ${item.id}: the download broke off (${(error as Error).message}); run the command again to resume`,
      exitCode: ExitCode.network,
    });
  }
  const written = (await fs.lstat(part)).size;
  const digest = hash.digest('hex');
  if (written !== size) {
    await fs.rm(part, { force: true });
    throw new CycleError({
      message: `artifact ${item.id}: got ${written} bytes, the server said ${size}; nothing was saved`,
      hint: 'run the command again',
      exitCode: ExitCode.network,
    });
  }
  if (sha256 && digest !== sha256) {
    await fs.rm(part, { force: true });
    throw new CycleError({
      message: `artifact ${item.id}: the checksum does not match (sha256 ${digest.slice(0, 12)}…, expected ${sha256.slice(0, 12)}…)`,
      hint: 'run the command again',
      exitCode: ExitCode.network,
    });
  }
  let target: string;
  try {
    target = await placeContained(outDir, part, relative, overwrite);
  } catch (error) {
    // The part file stays whole: with --overwrite, or once the name is free, the next run puts it in place.
    if (error instanceof ExistsError && (await sameFile(outDir, relative, written, digest))) {
      // Already here whole (a server that lists no sha256 for pull to compare): nothing to replace.
      await fs.rm(part, { force: true });
      return { id: item.id, path: path.join(outDir, relative), size: written, sha256: digest, skipped: true };
    }
    if (error instanceof UnsafePathError) return { id: item.id, refused: error };
    throw error;
  }
  ctx.ui.info(`${resuming ? 'resumed' : 'downloaded'} ${relative} (${formatBytes(written)})`);
  return { id: item.id, path: target, size: written, sha256: digest, skipped: false };
}

class TooLong extends Error {}

/**
 * Why `relative` can never be written in `outDir` (a refused name, a link or a file on the way, a
 * folder at the name), or undefined. A file at the name is decided once the bytes are here: the
 * same bytes are no conflict; other bytes need --overwrite.
 */
async function refusal(outDir: string, relative: string): Promise<UnsafePathError | undefined> {
  const reason = refusedNameReason(relative);
  if (reason) return new UnsafePathError(relative, reason);
  try {
    const existing = await containedStat(outDir, relative);
    if (existing?.isDirectory()) return new UnsafePathError(relative, 'a folder of that name exists here');
  } catch (error) {
    if (error instanceof UnsafePathError) return error;
    throw error;
  }
  return undefined;
}

/** Artifact ids as the platform makes them (`art_…`): they name the part file, so nothing else. */
export const ARTIFACT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
const ARTIFACT_ID_RULE = '1-128 letters, digits, "_" or "-"';

/** Where a download is written until it is whole: `--out/.<id>.cycle-part`. */
function partFile(outDir: string, id: string): string {
  try {
    return joinInside(outDir, `.${id}.cycle-part`);
  } catch {
    throw new CycleError({ message: `invalid artifact id ${JSON.stringify(id)}: expected ${ARTIFACT_ID_RULE}`, exitCode: ExitCode.usage });
  }
}

/** The whole artifact's size as the answer declares it: X-Artifact-Size, else Content-Range's total (206) or Content-Length (200). */
function declaredSize(status: number, header: (name: string) => string | undefined): number | undefined {
  const range = /\/(\d+)$/.exec(header('content-range') ?? '')?.[1];
  const text = header('x-artifact-size') ?? (status === 206 ? range : header('content-length'));
  if (text === undefined || !/^\d+$/.test(text.trim())) return undefined;
  return Number(text);
}

/** X-Artifact-Name is percent-encoded; a malformed one counts as absent. */
function decodeName(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}

/** A server-given name as a relative path that stays inside the folder: no "..", no root. */
export function safeRelativeName(name: string, fallback: string): { relative: string; changed: boolean } {
  const parts = name.split(/[\\/]+/).filter((part) => part !== '' && part !== '.' && part !== '..' && !/^[A-Za-z]:$/.test(part));
  const cleaned = parts.map((part) => part.replace(/[\0]/g, '')).filter(Boolean);
  const relative = cleaned.length ? cleaned.join('/') : fallback;
  return { relative, changed: relative !== name };
}

/**
 * Uploads files as artifacts, printing one id per file (in order) on stdout. Each file's sha256
 * is computed first and offered to the backend (`POST /api/v1/artifacts/direct`); the bytes go
 * (`POST /api/v1/artifacts`, streamed) only when it does not say it has them.
 */
export async function upload(options: UploadOptions, ctx: Context): Promise<number> {
  const files: Array<{ arg: string; file: string; size: number }> = [];
  for (const arg of options.files) {
    const file = path.resolve(ctx.cwd, arg);
    const stat = await fs.stat(file).catch((error: unknown) => {
      throw usageError(`${arg}: ${errnoCode(error) === 'ENOENT' ? 'no such file' : 'cannot be read'}`, 'give the path of a file to upload');
    });
    if (!stat.isFile()) throw usageError(`${arg}: not a file`, 'give the path of a file to upload (a folder: pack it first, e.g. tar -czf data.tar.gz data/)');
    files.push({ arg, file, size: stat.size });
  }
  const api = await ctx.api(options);
  const uploaded: Array<{ file: string; id: string; size: number; sha256: string; uploaded: boolean }> = [];
  for (const { arg, file, size } of files) {
    const hash = createHash('sha256');
    await pipeline(createReadStream(file), hash);
    const sha256 = hash.digest('hex');
    const filename = path.basename(file);
    const known = await api.artifactByHash({ sha256, size, filename });
    const knownId = known && (known.exists === true || known.already_exists === true) ? artifactIdOf(known) : undefined;
    let id = knownId;
    if (id === undefined) {
      ctx.ui.info(`uploading ${arg} (${formatBytes(size)})`);
      const answer = await api.uploadArtifact(
        filename,
        { open: () => createReadStream(file), length: size, contentType: 'application/octet-stream' },
        ctx.signal,
      );
      id = artifactIdOf(answer);
      if (id === undefined) throw unexpectedAnswer('POST /api/v1/artifacts', "has no `id` or `artifact_id` field (expected the new artifact's id)");
    } else ctx.ui.info(`${arg}: the backend already has it (sha256 ${sha256.slice(0, 12)})`);
    uploaded.push({ file: arg, id, size, sha256, uploaded: knownId === undefined });
    if (!options.json) ctx.ui.out(id);
  }
  if (options.json) ctx.ui.json(uploaded);
  return ExitCode.ok;
}
