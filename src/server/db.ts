import Database from 'better-sqlite3';
import { systemClock, type Clock } from '../context.js';

export type DB = Database.Database;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS projects (
  name TEXT PRIMARY KEY,
  active_revision INTEGER,
  created_at TEXT NOT NULL,
  remote_dir TEXT
);
CREATE TABLE IF NOT EXISTS revisions (
  project TEXT NOT NULL,
  number INTEGER NOT NULL,
  content_hash TEXT NOT NULL,
  build_hash TEXT NOT NULL,
  format TEXT NOT NULL,
  name_in_manifest TEXT,
  rebuild INTEGER NOT NULL DEFAULT 0,
  clean INTEGER NOT NULL DEFAULT 0,
  build_state TEXT NOT NULL DEFAULT 'pending',
  build_error TEXT,
  build_updated_at TEXT,
  image_id TEXT,
  created_at TEXT NOT NULL,
  bytes INTEGER,
  PRIMARY KEY (project, number)
);
CREATE TABLE IF NOT EXISTS builds (
  project TEXT PRIMARY KEY,
  record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL UNIQUE,
  project TEXT NOT NULL,
  revision INTEGER,
  type TEXT NOT NULL,
  status TEXT NOT NULL,
  request TEXT NOT NULL,
  error TEXT,
  created_at TEXT NOT NULL,
  started_at TEXT,
  finished_at TEXT,
  callback_state TEXT,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  task_base TEXT,
  inserting INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
CREATE TABLE IF NOT EXISTS job_tags (job_id TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (job_id, tag));
CREATE INDEX IF NOT EXISTS job_tags_tag ON job_tags(tag);
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  idx INTEGER NOT NULL,
  kind TEXT NOT NULL,
  status TEXT NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 0,
  payload TEXT NOT NULL,
  items INTEGER NOT NULL DEFAULT 1,
  command TEXT,
  result TEXT,
  error TEXT,
  exit_code INTEGER,
  latest_progress TEXT,
  output_tail TEXT NOT NULL DEFAULT '',
  last_failed TEXT,
  started_at TEXT,
  finished_at TEXT,
  stages TEXT
);
CREATE INDEX IF NOT EXISTS tasks_job ON tasks(job_id, idx);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks(status);
CREATE INDEX IF NOT EXISTS tasks_job_status ON tasks(job_id, status, idx);
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT,
  task_id TEXT,
  project TEXT,
  type TEXT NOT NULL,
  data TEXT NOT NULL,
  at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id, seq);
CREATE INDEX IF NOT EXISTS events_project ON events(project, seq);
CREATE INDEX IF NOT EXISTS events_task_progress ON events(task_id, seq) WHERE type = 'progress';
CREATE TABLE IF NOT EXISTS kv (
  project TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (project, key)
);
CREATE TABLE IF NOT EXISTS artifacts (
  id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  task_id TEXT NOT NULL,
  name TEXT NOT NULL,
  size INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  ord INTEGER NOT NULL,
  path TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_job ON artifacts(job_id, ord);
CREATE INDEX IF NOT EXISTS artifacts_task ON artifacts(task_id, ord);
-- A capture finds its file's row by name (issue 18: without it, each capture read all the task's rows).
CREATE INDEX IF NOT EXISTS artifacts_task_name ON artifacts(task_id, name);
CREATE TABLE IF NOT EXISTS volumes (
  name TEXT PRIMARY KEY,
  files TEXT NOT NULL,
  file_count INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  version TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
  id TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  title TEXT NOT NULL,
  description TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
  id TEXT PRIMARY KEY,
  sha256 TEXT NOT NULL UNIQUE,
  filename TEXT NOT NULL,
  size INTEGER NOT NULL,
  path TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS holds (
  id TEXT PRIMARY KEY,
  job_id TEXT,
  amount_usd REAL NOT NULL,
  state TEXT NOT NULL,
  charged_usd REAL,
  created_at TEXT NOT NULL,
  settled_at TEXT
);
CREATE INDEX IF NOT EXISTS holds_job ON holds(job_id);
CREATE TABLE IF NOT EXISTS ledger (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL,
  amount_usd REAL NOT NULL,
  job_id TEXT,
  description TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quotes (
  id TEXT PRIMARY KEY,
  purpose TEXT NOT NULL,
  project TEXT,
  job_id TEXT,
  tasks INTEGER NOT NULL,
  timeout_s REAL NOT NULL,
  required_usd REAL NOT NULL,
  available_usd REAL,
  shortfall_usd REAL NOT NULL,
  outcome TEXT NOT NULL,
  created_at TEXT NOT NULL
);
-- The machine pool (issue 20; machines/registry.ts). A machine token is kept as its SHA-256 hash only.
CREATE TABLE IF NOT EXISTS machine_tokens (
  id TEXT PRIMARY KEY,
  hash TEXT NOT NULL UNIQUE,
  name TEXT,
  created_at TEXT NOT NULL,
  revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS machine_tokens_name ON machine_tokens(name);
CREATE TABLE IF NOT EXISTS machines (
  name TEXT PRIMARY KEY,
  token_id TEXT NOT NULL,
  slots INTEGER NOT NULL DEFAULT 1,
  inventory TEXT,
  activity TEXT,
  last_heartbeat_at TEXT,
  enrolled_at TEXT NOT NULL,
  draining INTEGER NOT NULL DEFAULT 0
);
-- The web page's sessions (web/sessions.ts): the SHA-256 of each session's id only, and its times (ms since the epoch).
CREATE TABLE IF NOT EXISTS web_sessions (
  hash TEXT PRIMARY KEY,
  created_ms INTEGER NOT NULL,
  last_used_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
  key TEXT PRIMARY KEY,
  fingerprint TEXT NOT NULL,
  status INTEGER NOT NULL,
  body TEXT NOT NULL,
  created_at TEXT NOT NULL
);
`;

/**
 * The server's state. WAL mode: a committed transaction survives the process being killed at
 * any moment (`kill -9`), which is what "an accepted job is never lost" rests on.
 */
export function openDatabase(file: string): DB {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  addMissingColumns(db);
  db.exec(SCHEMA);
  cachePreparedStatements(db);
  return db;
}

/**
 * `db.prepare(sql)` answers the statement it prepared before for the same text: compiling SQL
 * took most of a busy machine pool's server time (every lease, renew, report and heartbeat
 * prepares a few; `npm run bench pool`). A statement still stepping through rows (`iterate()`)
 * is busy and cannot run again meanwhile: a fresh one is prepared then. No caller changes a
 * statement's mode (`pluck`, `raw`, `expand`, `safeIntegers`): a cached one would keep it.
 */
const MAX_CACHED_STATEMENTS = 1000;

function cachePreparedStatements(db: DB): void {
  const prepare = db.prepare.bind(db);
  const cache = new Map<string, Database.Statement>();
  db.prepare = ((sql: string) => {
    const cached = cache.get(sql);
    if (cached && !cached.busy) return cached;
    const statement = prepare(sql);
    // Bounded: a text built from a list's length (`IN (?, ?, …)`) is one entry per length.
    if (!cached && cache.size < MAX_CACHED_STATEMENTS) cache.set(sql, statement);
    return statement;
  }) as DB['prepare'];
}

/**
 * Columns added after the first release, for databases made before them (CREATE TABLE IF NOT
 * EXISTS leaves an existing table as it is):
 * - `jobs.task_base`: what every task of the job shares (planner.ts `TaskBase`), stored once;
 *   the job's `tasks.payload` then hold each task's part only. NULL for jobs stored before,
 *   whose `tasks.payload` hold whole payloads.
 * - `jobs.inserting`: 1 while a job's tasks are being written (in chunks); such a job is not
 *   visible, and one left so by a crash is removed on the next start.
 * - `projects.remote_dir`: what `POST /api/v1/projects` was given (NULL for pushed-only projects).
 * - `revisions.bytes`: disk its content takes (tarball and extracted tree), counted against the
 *   push quotas; NULL (counted as 0) for revisions stored before.
 * - `tasks.stages`: JSON of the worker's stage times for the task's last attempt (lease.ts
 *   `WorkerStages`); NULL before a worker reported them.
 */
function addMissingColumns(db: DB): void {
  const columnsOf = (table: string): Set<string> =>
    new Set((db.prepare(`SELECT name FROM pragma_table_info('${table}')`).all() as Array<{ name: string }>).map((c) => c.name));
  const columns = columnsOf('jobs');
  if (columns.size === 0) return; // a new database: SCHEMA makes the table whole
  if (!columns.has('task_base')) db.exec('ALTER TABLE jobs ADD COLUMN task_base TEXT');
  if (!columns.has('inserting')) db.exec('ALTER TABLE jobs ADD COLUMN inserting INTEGER NOT NULL DEFAULT 0');
  const projectColumns = columnsOf('projects');
  if (projectColumns.size > 0 && !projectColumns.has('remote_dir')) db.exec('ALTER TABLE projects ADD COLUMN remote_dir TEXT');
  const revisionColumns = columnsOf('revisions');
  if (revisionColumns.size > 0 && !revisionColumns.has('bytes')) db.exec('ALTER TABLE revisions ADD COLUMN bytes INTEGER');
  const taskColumns = columnsOf('tasks');
  if (taskColumns.size > 0 && !taskColumns.has('stages')) db.exec('ALTER TABLE tasks ADD COLUMN stages TEXT');
}

/** A stored time (ISO 8601, UTC) from the injected clock: every timestamp in the database comes from one, so tests can fix it. */
export function timestamp(clock: Clock | undefined): string {
  return new Date((clock ?? systemClock).now()).toISOString();
}

export function parseJson<T>(text: string | null | undefined, fallback: T): T {
  if (text === null || text === undefined) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}
