import fs from 'node:fs/promises';
import path from 'node:path';
import type { DB } from './db.js';
import { parseJson } from './db.js';
import { deleteJobEvents } from './events.js';
import type { Layout } from './layout.js';
import { deleteRevisionUnlessUsed } from './projects.js';
import { deleteJobArtifacts } from './state.js';

/** What `cycle server-gc` keeps; see docs/api.md "Retention". */
export interface RetentionPolicy {
  /** Newest revisions kept per project (at least 1), besides the active one and those an unfinished job uses. */
  keepRevisions: number;
  /** Finished jobs older than this (by finished_at) lose their artifacts, logs, work folders and events. */
  olderThanMs: number;
}

export const DEFAULT_RETENTION: RetentionPolicy = { keepRevisions: 5, olderThanMs: 30 * 24 * 3600 * 1000 };

/** How old an unreferenced tree, tarball or volume blob must be before it goes. */
export const UNREFERENCED_GRACE_MS = 24 * 3600 * 1000;

const UNFINISHED_JOB_STATUSES = "('planning', 'queued', 'running')";

export interface RetentionPlan {
  revisions: Array<{ project: string; number: number }>;
  /** Finished jobs whose files and events go (the job and task rows stay: the history). */
  jobs: Array<{ id: string; artifacts: number; events: number }>;
  /** Files and folders under the data folder that go, relative to it. */
  paths: string[];
  bytes: number;
}

async function sizeOf(target: string): Promise<number | undefined> {
  const stat = await fs.lstat(target).catch(() => undefined);
  if (!stat) return undefined;
  if (!stat.isDirectory()) return stat.size;
  let total = 0;
  for (const entry of await fs.readdir(target)) total += (await sizeOf(path.join(target, entry))) ?? 0;
  return total;
}

async function entries(dir: string): Promise<string[]> {
  return fs.readdir(dir).catch(() => []);
}

/** What a gc would delete now; reads only. `nowMs` is the clock the age is measured against. */
export async function planRetention(db: DB, layout: Layout, policy: RetentionPolicy, nowMs: number): Promise<RetentionPlan> {
  const keptRevisions = new Set<string>();
  const keyOf = (project: string, number: number): string => `${project}\u0000${number}`;
  const revisions = db.prepare('SELECT project, number, content_hash FROM revisions ORDER BY project, number DESC').all() as Array<{
    project: string;
    number: number;
    content_hash: string;
  }>;
  const active = db.prepare('SELECT name, active_revision FROM projects').all() as Array<{ name: string; active_revision: number | null }>;
  for (const project of active) if (project.active_revision !== null) keptRevisions.add(keyOf(project.name, project.active_revision));
  const inUse = db.prepare(`SELECT DISTINCT project, revision FROM jobs WHERE revision IS NOT NULL AND status IN ${UNFINISHED_JOB_STATUSES}`).all() as Array<{
    project: string;
    revision: number;
  }>;
  for (const job of inUse) keptRevisions.add(keyOf(job.project, job.revision));
  // The newest revision always stays: numbers are MAX(number) + 1, and a reused number would
  // point old jobs at a revision they did not run.
  const keepNewest = Math.max(1, policy.keepRevisions);
  const seenPerProject = new Map<string, number>();
  const doomedRevisions: RetentionPlan['revisions'] = [];
  const keptHashes = new Set<string>();
  for (const revision of revisions) {
    const seen = seenPerProject.get(revision.project) ?? 0;
    seenPerProject.set(revision.project, seen + 1);
    if (seen < keepNewest || keptRevisions.has(keyOf(revision.project, revision.number))) keptHashes.add(revision.content_hash);
    else doomedRevisions.push({ project: revision.project, number: revision.number });
  }

  // A push stores its tree and tarball, and a volume upload its blobs, before the row that
  // references them commits: an unreferenced file younger than the grace may be one of those.
  const settled = async (target: string): Promise<boolean> => {
    const stat = await fs.lstat(target).catch(() => undefined);
    return stat !== undefined && stat.mtimeMs <= nowMs - UNREFERENCED_GRACE_MS;
  };
  const paths: string[] = [];
  // Trees and tarballs are content-addressed: one goes when no kept revision has its hash.
  for (const name of await entries(path.join(layout.dataDir, 'trees'))) {
    if (!keptHashes.has(name) && (await settled(path.join(layout.dataDir, 'trees', name)))) paths.push(path.join('trees', name));
  }
  for (const name of await entries(path.join(layout.dataDir, 'blobs', 'tarballs'))) {
    const hash = name.endsWith('.tar.gz') ? name.slice(0, -'.tar.gz'.length) : undefined;
    if (hash !== undefined && !keptHashes.has(hash) && (await settled(path.join(layout.dataDir, 'blobs', 'tarballs', name))))
      paths.push(path.join('blobs', 'tarballs', name));
  }

  const cutoff = new Date(nowMs - policy.olderThanMs).toISOString();
  const oldJobs = db
    .prepare(`SELECT id FROM jobs WHERE status NOT IN ${UNFINISHED_JOB_STATUSES} AND finished_at IS NOT NULL AND finished_at < ? ORDER BY seq`)
    .all(cutoff) as Array<{ id: string }>;
  const countArtifacts = db.prepare('SELECT COUNT(*) AS n FROM artifacts WHERE job_id = ?');
  const countEvents = db.prepare('SELECT COUNT(*) AS n FROM events WHERE job_id = ?');
  const tasksOf = db.prepare('SELECT id FROM tasks WHERE job_id = ?');
  const jobs: RetentionPlan['jobs'] = [];
  for (const job of oldJobs) {
    const artifacts = (countArtifacts.get(job.id) as { n: number }).n;
    const events = (countEvents.get(job.id) as { n: number }).n;
    const jobPaths: string[] = [];
    const outputs = path.join(layout.dataDir, 'artifacts', job.id);
    if ((await sizeOf(outputs)) !== undefined) jobPaths.push(path.relative(layout.dataDir, outputs));
    for (const task of tasksOf.all(job.id) as Array<{ id: string }>) {
      for (const file of [layout.taskLog(task.id), layout.taskWork(task.id)]) {
        if ((await sizeOf(file)) !== undefined) jobPaths.push(path.relative(layout.dataDir, file));
      }
    }
    if (artifacts === 0 && events === 0 && jobPaths.length === 0) continue; // already collected
    jobs.push({ id: job.id, artifacts, events });
    paths.push(...jobPaths);
  }

  // Volume blobs are shared by content: one goes when no volume's manifest (volumes.ts
  // `commit`: [path, sha256, size, executable] rows) lists it. Volume trees are the volume
  // service's own (it keeps the current and the previous version, for running tasks).
  const keptBlobs = new Set<string>();
  for (const volume of db.prepare('SELECT files FROM volumes').all() as Array<{ files: string }>) {
    for (const file of parseJson<unknown[]>(volume.files, [])) if (Array.isArray(file) && typeof file[1] === 'string') keptBlobs.add(file[1]);
  }
  for (const name of await entries(path.join(layout.dataDir, 'blobs', 'volumes'))) {
    if (!keptBlobs.has(name) && (await settled(path.join(layout.dataDir, 'blobs', 'volumes', name)))) paths.push(path.join('blobs', 'volumes', name));
  }

  let bytes = 0;
  for (const relative of paths) bytes += (await sizeOf(path.join(layout.dataDir, relative))) ?? 0;
  return { revisions: doomedRevisions, jobs, paths, bytes };
}

/**
 * Deletes what `plan` lists: the rows first, in one transaction that checks again that each
 * revision is still neither active nor used by an unfinished job, then the files (a crash in
 * between leaves only unreferenced files, which the next gc finds).
 */
export async function applyRetention(db: DB, layout: Layout, plan: RetentionPlan): Promise<void> {
  // Each table's rows go through the module that owns the table (docs/design.md, "One owner per table").
  db.transaction(() => {
    for (const revision of plan.revisions) deleteRevisionUnlessUsed(db, revision.project, revision.number);
    for (const job of plan.jobs) {
      deleteJobArtifacts(db, job.id);
      deleteJobEvents(db, job.id);
    }
  })();
  // A revision the transaction kept (made active meanwhile) keeps its tree and tarball.
  const referenced = new Set((db.prepare('SELECT DISTINCT content_hash FROM revisions').all() as Array<{ content_hash: string }>).map((r) => r.content_hash));
  const stillReferenced = (relative: string): boolean => {
    const [top, second, third] = relative.split(path.sep);
    if (top === 'trees' && second !== undefined) return referenced.has(second);
    return top === 'blobs' && second === 'tarballs' && third !== undefined && referenced.has(third.replace(/\.tar\.gz$/, ''));
  };
  for (const relative of plan.paths) {
    if (stillReferenced(relative)) continue;
    await fs.rm(path.join(layout.dataDir, relative), { recursive: true, force: true });
  }
}
