import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type DB, openDatabase } from '../../src/server/db.js';
import { WalCheckpointer } from '../../src/server/wal-checkpointer.js';
import { tempDir } from '../helpers/context.js';

const opened: DB[] = [];
afterEach(() => {
  for (const db of opened.splice(0)) if (db.open) db.close();
});

const autocheckpoint = (db: DB): number => db.pragma('wal_autocheckpoint', { simple: true }) as number;

/** About `bytes` of rows committed in transactions of ~64 KiB (far past the 1,000 pages a connection would checkpoint at). */
function write(db: DB, bytes: number): void {
  db.exec('CREATE TABLE IF NOT EXISTS filler (text TEXT NOT NULL)');
  const insert = db.prepare('INSERT INTO filler (text) VALUES (?)');
  const row = 'x'.repeat(1024);
  for (let written = 0; written < bytes; written += 64 * 1024) db.transaction(() => Array.from({ length: 64 }, () => insert.run(row)))();
}

async function until(check: () => boolean, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  return check();
}

describe('WAL checkpoints on a thread of their own (issue 20: a commit never waits for a checkpoint)', () => {
  it("the server's connection stops checkpointing once the thread runs; the thread copies the WAL into the database file; stop gives it back", async () => {
    const file = path.join(await tempDir('cycle-wal-'), 'cycle.db');
    const db = openDatabase(file);
    opened.push(db);
    expect(autocheckpoint(db)).toBe(1000);
    const lines: string[] = [];
    const checkpointer = new WalCheckpointer(db, file, (line) => lines.push(line), 100);
    await checkpointer.start();
    expect(autocheckpoint(db)).toBe(0);
    const before = fs.statSync(file).size;
    write(db, 8 << 20);
    // Only the thread checkpoints now: the database file grows by what the WAL held.
    expect(await until(() => fs.statSync(file).size >= before + (8 << 20), 20_000)).toBe(true);
    await checkpointer.stop();
    expect(autocheckpoint(db)).toBe(1000);
    expect(lines).toEqual([]);
    expect((db.prepare('SELECT COUNT(*) AS n FROM filler').get() as { n: number }).n).toBe(8 * 1024);
  });

  it('a thread that cannot open the database leaves the checkpoints to the connection, and says so', async () => {
    const file = path.join(await tempDir('cycle-wal-'), 'cycle.db');
    const db = openDatabase(file);
    opened.push(db);
    const lines: string[] = [];
    const checkpointer = new WalCheckpointer(db, path.join(path.dirname(file), 'missing', 'cycle.db'), (line) => lines.push(line), 100);
    await checkpointer.start();
    expect(autocheckpoint(db)).toBe(1000);
    expect(lines.join('\n')).toMatch(/database checkpoints are made by the server's own connection again/);
    await checkpointer.stop();
  });
});
