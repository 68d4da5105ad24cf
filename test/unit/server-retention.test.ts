import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openDatabase, type DB } from '../../src/server/db.js';
import { layout, type Layout } from '../../src/server/layout.js';
import { VolumeService } from '../../src/server/volumes.js';
import { applyRetention, planRetention } from '../../src/server/retention.js';
import { parseAge, run as serverGc } from '../../src/commands/server-gc.js';
import { fakeContext, tempDir } from '../helpers/context.js';

const DAY = 86_400_000;
const NOW = Date.parse('2026-06-01T00:00:00.000Z');
const daysAgo = (days: number): string => new Date(NOW - days * DAY).toISOString();
const POLICY = { keepRevisions: 2, olderThanMs: 30 * DAY };

let dir: string;
let db: DB;
let where: Layout;

async function put(file: string, bytes: number): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, Buffer.alloc(bytes));
  // Old enough for the grace on unreferenced files (see the test of a fresh one).
  const old = new Date(NOW - 90 * DAY);
  await fs.utimes(file, old, old);
  await fs.utimes(path.dirname(file), old, old);
}

async function exists(relative: string): Promise<boolean> {
  return fs.stat(path.join(dir, relative)).then(
    () => true,
    () => false,
  );
}

/** A revision with its tree (one 10-byte file) and tarball (20 bytes); its content hash is `h<project><number>`. */
async function revision(project: string, number: number): Promise<void> {
  const hash = `h${project}${number}`;
  db.prepare("INSERT INTO revisions (project, number, content_hash, build_hash, format, created_at) VALUES (?, ?, ?, 'b', 'computalot', ?)").run(
    project,
    number,
    hash,
    daysAgo(100 - number),
  );
  await put(path.join(where.tree(hash), 'main.py'), 10);
  await put(where.tarball(hash), 20);
}

let seq = 0;
/** A job of one task, with an artifact (row + 100-byte file), a log, a work folder and an event. */
async function job(id: string, project: string, rev: number, status: string, finishedDaysAgo: number | null): Promise<void> {
  seq += 1;
  const finished = finishedDaysAgo === null ? null : daysAgo(finishedDaysAgo);
  db.prepare(
    "INSERT INTO jobs (id, seq, project, revision, type, status, request, created_at, finished_at) VALUES (?, ?, ?, ?, 'structured_runner', ?, '{}', ?, ?)",
  ).run(id, seq, project, rev, status, daysAgo(200), finished);
  const task = `${id}_t0`;
  db.prepare("INSERT INTO tasks (id, job_id, idx, kind, status, payload) VALUES (?, ?, 0, 'run', ?, '{}')").run(
    task,
    id,
    status === 'running' ? 'running' : 'succeeded',
  );
  const output = path.join(where.taskOutputs(id, task), 'out.txt');
  await put(output, 100);
  db.prepare("INSERT INTO artifacts (id, job_id, task_id, name, size, sha256, ord, path, created_at) VALUES (?, ?, ?, 'out.txt', 100, 's', 0, ?, ?)").run(
    `art_${id}`,
    id,
    task,
    output,
    daysAgo(200),
  );
  db.prepare("INSERT INTO events (job_id, task_id, project, type, data, at) VALUES (?, ?, ?, 'job', '{}', ?)").run(id, task, project, daysAgo(200));
  await put(where.taskLog(task), 7);
  await put(path.join(where.taskWork(task), 'scratch'), 3);
}

beforeEach(async () => {
  dir = await tempDir('cycle-gc-');
  where = layout(dir);
  db = openDatabase(where.db);
  // Project p: revisions 1-6, active 1 (old but active), revision 2 used by a running job.
  db.prepare("INSERT INTO projects (name, active_revision, created_at) VALUES ('p', 1, ?)").run(daysAgo(200));
  for (let number = 1; number <= 6; number += 1) await revision('p', number);
  await job('job_old', 'p', 3, 'completed', 40); // finished 40 days ago: its files go
  await job('job_recent', 'p', 6, 'failed', 5); // finished 5 days ago: stays
  await job('job_running', 'p', 2, 'running', null); // never goes
  // Volumes: one blob the volume's manifest lists (volumes.ts stores [path, sha256, size, executable] rows), one no volume lists.
  db.prepare("INSERT INTO volumes (name, files, file_count, bytes, version, updated_at) VALUES ('data', ?, 1, 4, 'v2', ?)").run(
    JSON.stringify([['a.txt', 'blobkept', 4, false]]),
    daysAgo(1),
  );
  await put(where.volumeBlob('blobkept'), 4);
  await put(where.volumeBlob('blobstale'), 9);
  await put(path.join(where.volumeTree('data', 'v2'), 'a.txt'), 4);
});

afterEach(async () => {
  db.close();
  await fs.rm(dir, { recursive: true, force: true });
});

const revisionNumbers = (): number[] =>
  (db.prepare("SELECT number FROM revisions WHERE project = 'p' ORDER BY number").all() as Array<{ number: number }>).map((r) => r.number);
const count = (sql: string, id: string): number => (db.prepare(sql).get(id) as { n: number }).n;

describe('server retention (cycle server-gc)', () => {
  it('plans the old revisions, old jobs’ files and unreferenced blobs, keeping the active revision and a running job’s', async () => {
    const plan = await planRetention(db, where, POLICY, NOW);
    // Kept: 5 and 6 (newest two), 1 (active), 2 (running job). Gone: 3 and 4.
    expect(plan.revisions).toEqual([
      { project: 'p', number: 4 },
      { project: 'p', number: 3 },
    ]);
    expect(plan.jobs).toEqual([{ id: 'job_old', artifacts: 1, events: 1 }]);
    expect([...plan.paths].sort()).toEqual(
      [
        'artifacts/job_old',
        'blobs/tarballs/hp3.tar.gz',
        'blobs/tarballs/hp4.tar.gz',
        'blobs/volumes/blobstale',
        'logs/job_old_t0.log',
        'trees/hp3',
        'trees/hp4',
        'work/job_old_t0',
      ].map((p) => p.split('/').join(path.sep)),
    );
    // 2 × (10 + 20) revision bytes, 100 + 7 + 3 job bytes, 9 blob bytes.
    expect(plan.bytes).toBe(60 + 110 + 9);
  });

  it('a dry run (plan without apply) deletes nothing', async () => {
    await planRetention(db, where, POLICY, NOW);
    expect(revisionNumbers()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await exists('trees/hp3')).toBe(true);
    expect(await exists('artifacts/job_old')).toBe(true);
    expect(count('SELECT COUNT(*) AS n FROM events WHERE job_id = ?', 'job_old')).toBe(1);
  });

  it('apply deletes exactly the plan: rows and files; the active revision, running and recent jobs stay', async () => {
    await applyRetention(db, where, await planRetention(db, where, POLICY, NOW));
    expect(revisionNumbers()).toEqual([1, 2, 5, 6]);
    for (const gone of [
      'trees/hp3',
      'trees/hp4',
      'blobs/tarballs/hp3.tar.gz',
      'artifacts/job_old',
      'logs/job_old_t0.log',
      'work/job_old_t0',
      'blobs/volumes/blobstale',
    ])
      expect(await exists(gone), gone).toBe(false);
    for (const kept of [
      'trees/hp1',
      'trees/hp2',
      'trees/hp5',
      'trees/hp6',
      'blobs/tarballs/hp1.tar.gz',
      'artifacts/job_running',
      'logs/job_running_t0.log',
      'work/job_running_t0',
      'artifacts/job_recent',
      'blobs/volumes/blobkept',
      'volume-trees/data/v2',
    ])
      expect(await exists(kept), kept).toBe(true);
    expect(count('SELECT COUNT(*) AS n FROM artifacts WHERE job_id = ?', 'job_old')).toBe(0);
    expect(count('SELECT COUNT(*) AS n FROM events WHERE job_id = ?', 'job_old')).toBe(0);
    expect(count('SELECT COUNT(*) AS n FROM artifacts WHERE job_id = ?', 'job_recent')).toBe(1);
    expect(count('SELECT COUNT(*) AS n FROM jobs WHERE id = ?', 'job_old')).toBe(1); // the history stays
    // A second run finds nothing left to do.
    const again = await planRetention(db, where, POLICY, NOW);
    expect(again).toEqual({ revisions: [], jobs: [], paths: [], bytes: 0 });
  });

  it('keeps the newest revision even with keepRevisions 0, so revision numbers are never reused', async () => {
    db.prepare("UPDATE projects SET active_revision = 3 WHERE name = 'p'").run();
    await applyRetention(db, where, await planRetention(db, where, { ...POLICY, keepRevisions: 0 }, NOW));
    expect(revisionNumbers()).toEqual([2, 3, 6]);
  });

  it('keeps the blobs of a volume committed through the volume service', async () => {
    const content = Buffer.from('hello volume\n');
    const sha256 = createHash('sha256').update(content).digest('hex');
    await put(where.volumeBlob(sha256), 0);
    await fs.writeFile(where.volumeBlob(sha256), content);
    const old = new Date(NOW - 90 * DAY);
    await fs.utimes(where.volumeBlob(sha256), old, old);
    const volumes = new VolumeService({ db, layout: where, maxBlobBytes: 1 << 20, log: () => undefined });
    await volumes.commit('real', { files: [{ path: 'hello.txt', sha256, size: content.length, executable: false }] });
    const plan = await planRetention(db, where, POLICY, NOW);
    expect(plan.paths).not.toContain(path.join('blobs', 'volumes', sha256));
    expect(plan.paths).toContain(path.join('blobs', 'volumes', 'blobstale'));
  });

  it('leaves unreferenced trees, tarballs and volume blobs younger than a day (a push or upload not yet committed)', async () => {
    const fresh = new Date(NOW - 3_600_000);
    for (const file of [where.tree('hp3'), where.tarball('hp3'), where.volumeBlob('blobstale')]) await fs.utimes(file, fresh, fresh);
    const plan = await planRetention(db, where, POLICY, NOW);
    expect(plan.paths).not.toContain(path.join('trees', 'hp3'));
    expect(plan.paths).not.toContain(path.join('blobs', 'tarballs', 'hp3.tar.gz'));
    expect(plan.paths).not.toContain(path.join('blobs', 'volumes', 'blobstale'));
    expect(plan.paths).toContain(path.join('trees', 'hp4'));
  });

  it('a revision made active between plan and apply keeps its row, tree and tarball', async () => {
    const plan = await planRetention(db, where, POLICY, NOW);
    db.prepare("UPDATE projects SET active_revision = 3 WHERE name = 'p'").run();
    await applyRetention(db, where, plan);
    expect(revisionNumbers()).toEqual([1, 2, 3, 5, 6]);
    expect(await exists('trees/hp3')).toBe(true);
    expect(await exists('blobs/tarballs/hp3.tar.gz')).toBe(true);
    expect(await exists('trees/hp4')).toBe(false);
  });

  it('reads ages as 30d, 12h, 90m and refuses others', () => {
    expect(parseAge('30d')).toBe(30 * DAY);
    expect(parseAge('12h')).toBe(12 * 3_600_000);
    expect(parseAge('90m')).toBe(90 * 60_000);
    expect(parseAge('30')).toBeUndefined();
    expect(parseAge('1w')).toBeUndefined();
  });

  it('cycle server-gc --dry-run --json lists the plan and deletes nothing; without --dry-run it deletes', async () => {
    const dry = fakeContext({ cwd: dir, now: NOW });
    const options = { dataDir: dir, keepRevisions: '2', olderThan: '30d', json: true };
    expect(await serverGc({ ...options, dryRun: true }, dry.ctx)).toBe(0);
    const printed = JSON.parse(dry.stdout.text) as { dry_run: boolean; revisions: unknown[]; jobs: unknown[]; bytes: number };
    expect(printed.dry_run).toBe(true);
    expect(printed.revisions).toHaveLength(2);
    expect(printed.bytes).toBe(179);
    expect(revisionNumbers()).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await exists('artifacts/job_old')).toBe(true);
    const real = fakeContext({ cwd: dir, now: NOW });
    expect(await serverGc({ ...options, dryRun: false }, real.ctx)).toBe(0);
    expect(revisionNumbers()).toEqual([1, 2, 5, 6]);
    expect(await exists('artifacts/job_old')).toBe(false);
  });

  it('cycle server-gc names the flag at fault', async () => {
    const { ctx } = fakeContext({ cwd: dir, now: NOW });
    const base = { dataDir: dir, keepRevisions: '5', olderThan: '30d', json: false, dryRun: true };
    await expect(serverGc({ ...base, keepRevisions: '-1' }, ctx)).rejects.toThrow(/--keep-revisions -1: expected a whole number/);
    await expect(serverGc({ ...base, keepRevisions: '0' }, ctx)).rejects.toThrow(/--keep-revisions 0: expected a whole number of revisions, 1 or more/);
    await expect(serverGc({ ...base, olderThan: '1w' }, ctx)).rejects.toThrow(/--older-than 1w: expected an age such as 30d/);
    await expect(serverGc({ ...base, dataDir: path.join(dir, 'nowhere') }, ctx)).rejects.toThrow(/--data-dir .*nowhere: no server database there/);
    expect(await exists('nowhere')).toBe(false);
  });
});
