import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/server/db.js';
import { MemorySessionStore, SESSION_IDLE_MS, SESSION_MAX_MS, SqliteSessionStore, WebSessions } from '../../src/server/web/sessions.js';
import { tempDir } from '../helpers/context.js';

/*
 * The web page's sessions are kept in the server's database (docs/design.md, "The web page"): a
 * restart keeps a page signed in; the database holds only the SHA-256 of a session's id (neither
 * the id nor the CSRF value); sign-out and expiry remove the row. The rules (expiry, sign-out)
 * run on the memory store too, which stands in for the database in other unit tests.
 */
function fakeClock(start = Date.parse('2026-12-07T12:00:00Z')) {
  let now = start;
  return { now: () => now, sleep: async () => undefined, advance: (ms: number) => (now += ms) };
}

describe('web sessions in the database', () => {
  it('survive a restart (a new WebSessions on the reopened database): the same session, the same CSRF value', async () => {
    const file = path.join(await tempDir('cycle-web-store-'), 'state.db');
    const clock = fakeClock();
    let db = openDatabase(file);
    const before = new WebSessions({ store: new SqliteSessionStore(db), clock });
    const { id, session } = before.redeem(before.issueCode().code)!;
    const rows = db.prepare('SELECT * FROM web_sessions').all() as Array<Record<string, unknown>>;
    expect(rows).toHaveLength(1);
    // Only the hash is stored: neither the cookie's id nor the CSRF value is anywhere in the row.
    expect(rows[0]!.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(rows)).not.toContain(id);
    expect(JSON.stringify(rows)).not.toContain(session.csrf);
    db.close();

    db = openDatabase(file);
    const after = new WebSessions({ store: new SqliteSessionStore(db), clock });
    expect(after.session(id)?.csrf).toBe(session.csrf);
    expect(after.session('made-up')).toBeUndefined();
    // Signed out: gone from the database, so not back after another restart.
    after.end(id);
    db.close();
    db = openDatabase(file);
    expect(new WebSessions({ store: new SqliteSessionStore(db), clock }).session(id)).toBeUndefined();
    expect(db.prepare('SELECT COUNT(*) AS n FROM web_sessions').get()).toEqual({ n: 0 });
    db.close();
  });

  it('expire after the idle time and after the longest life; expired rows are pruned at start', async () => {
    const db = openDatabase(path.join(await tempDir('cycle-web-store-'), 'state.db'));
    const clock = fakeClock();
    const sessions = new WebSessions({ store: new SqliteSessionStore(db), clock });
    const idle = sessions.redeem(sessions.issueCode().code)!.id;
    const used = sessions.redeem(sessions.issueCode().code)!.id;
    // Used every few hours: alive past the idle time, but not past the longest life.
    for (let elapsed = 0; elapsed < SESSION_MAX_MS - 3 * 3600_000; elapsed += 3 * 3600_000) {
      clock.advance(3 * 3600_000);
      expect(sessions.session(used), `at ${elapsed / 3600_000} h`).toBeDefined();
    }
    expect(sessions.session(idle)).toBeUndefined();
    clock.advance(3 * 3600_000 + 1);
    expect(sessions.session(used)).toBeUndefined();
    expect(db.prepare('SELECT COUNT(*) AS n FROM web_sessions').get()).toEqual({ n: 0 });

    // Left behind (never looked up again): pruned when the server starts.
    const left = sessions.redeem(sessions.issueCode().code)!.id;
    clock.advance(SESSION_IDLE_MS + 3600_000);
    expect(db.prepare('SELECT COUNT(*) AS n FROM web_sessions').get()).toEqual({ n: 1 });
    new WebSessions({ store: new SqliteSessionStore(db), clock });
    expect(db.prepare('SELECT COUNT(*) AS n FROM web_sessions').get()).toEqual({ n: 0 });
    expect(sessions.session(left)).toBeUndefined();
    db.close();
  });

  it('the memory store keeps the same rules (the fake other unit tests use)', () => {
    const clock = fakeClock();
    const sessions = new WebSessions({ store: new MemorySessionStore(), clock });
    const { id, session } = sessions.redeem(sessions.issueCode().code)!;
    expect(sessions.session(id)?.csrf).toBe(session.csrf);
    clock.advance(SESSION_IDLE_MS + 1);
    expect(sessions.session(id)).toBeUndefined();
    const again = sessions.redeem(sessions.issueCode().code)!.id;
    sessions.end(again);
    expect(sessions.session(again)).toBeUndefined();
  });
});
