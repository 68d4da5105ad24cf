import fs from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/server/db.js';
import { tempDir } from '../helpers/context.js';

let dir: string | undefined;
afterEach(async () => {
  if (dir) await fs.rm(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('the server database', () => {
  it('a database made before task_base and inserting gets both columns, its jobs kept', async () => {
    dir = await tempDir('cycle-db-');
    const file = path.join(dir, 'cycle.db');
    const old = new Database(file);
    old.exec(`CREATE TABLE jobs (id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, project TEXT NOT NULL, revision INTEGER, type TEXT NOT NULL, status TEXT NOT NULL, request TEXT NOT NULL, error TEXT, created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, callback_state TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0);
      INSERT INTO jobs (id, seq, project, type, status, request, created_at) VALUES ('job_old', 1, 'p', 'structured_runner', 'completed', '{}', 'then');`);
    old.close();
    const db = openDatabase(file);
    try {
      expect(db.prepare("SELECT id, task_base, inserting FROM jobs WHERE id = 'job_old'").get()).toEqual({ id: 'job_old', task_base: null, inserting: 0 });
    } finally {
      db.close();
    }
  });
});
