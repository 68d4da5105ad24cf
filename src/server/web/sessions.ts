import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../context.js';
import { systemClock } from '../../context.js';
import type { DB } from '../db.js';

/*
 * The web page's sign-in (docs/design.md, "The web page"): a one-time sign-in code, made for a
 * holder of the API token (`cycle dashboard`, the server's start-up output), is traded once for a
 * session: a random id kept in an HttpOnly, SameSite=Strict cookie, and a CSRF value the page
 * reads from `GET /api/v1/session` and sends back on every change. The token itself never reaches
 * the browser. Sessions are kept in the server's database (a `SessionStore`) by the SHA-256 of
 * their id only, so a restart keeps the page signed in and the database holds no usable secret;
 * the CSRF value is derived from the id, never stored. Codes (10 minutes, once) stay in memory.
 */

/** How long a sign-in link works (once). */
export const SIGN_IN_CODE_TTL_MS = 10 * 60_000;
/** How long a session lives without use, and at most. */
export const SESSION_IDLE_MS = 12 * 3600_000;
export const SESSION_MAX_MS = 7 * 24 * 3600_000;
/** Caps on what is held, so a token holder looping on the links route cannot fill memory. */
const MAX_CODES = 1000;
const MAX_SESSIONS = 1000;

/**
 * The session cookie's name: with this server's port in it, since browsers send a host's cookies
 * to every port of it (two servers on 127.0.0.1 would otherwise overwrite each other's).
 */
export function sessionCookieName(port: number): string {
  return `cycle_session_${port}`;
}

export interface WebSession {
  /** Sent back by the page in `X-Cycle-CSRF` on every change. */
  csrf: string;
  createdAt: number;
  lastUsedAt: number;
}

/** What is kept of a session: its times, under the SHA-256 of its id (the id and CSRF value are never stored). */
export interface StoredSession {
  createdAt: number;
  lastUsedAt: number;
}

/** Where sessions are kept: the server's database (SqliteSessionStore), or memory in unit tests (MemorySessionStore). */
export interface SessionStore {
  get(key: string): StoredSession | undefined;
  put(key: string, session: StoredSession): void;
  touch(key: string, lastUsedAt: number): void;
  remove(key: string): void;
  /** Removes the sessions last used at or before `idleBefore` or made at or before `createdBefore`. */
  prune(idleBefore: number, createdBefore: number): void;
  count(): number;
  /** Removes the session used longest ago (the cap on sessions is reached). */
  removeLeastRecent(): void;
}

/** A session's last use is written at most this often (a write per request would be one per page read). */
const TOUCH_EVERY_MS = 60_000;

/** The one-time codes and sessions of this server, keyed by the SHA-256 of their secret (a lookup never compares secrets byte by byte). */
export class WebSessions {
  private readonly codes = new Map<string, number>();
  private readonly store: SessionStore;
  private readonly clock: Clock;
  /** Set once the server listens (sessionCookieName). */
  cookieName = 'cycle_session';

  constructor(options: { store?: SessionStore; clock?: Clock | undefined } = {}) {
    this.store = options.store ?? new MemorySessionStore();
    this.clock = options.clock ?? systemClock;
    this.prune();
  }

  /** A new one-time sign-in code, valid for SIGN_IN_CODE_TTL_MS. */
  issueCode(): { code: string; expiresAt: number } {
    this.prune();
    if (this.codes.size >= MAX_CODES) this.codes.delete(this.codes.keys().next().value!);
    const code = randomBytes(24).toString('base64url');
    const expiresAt = this.clock.now() + SIGN_IN_CODE_TTL_MS;
    this.codes.set(digest(code), expiresAt);
    return { code, expiresAt };
  }

  /** Trades a code for a session (the code is spent, whether or not it was still valid); undefined when it is unknown, used or expired. */
  redeem(code: string): { id: string; session: WebSession } | undefined {
    const key = digest(code);
    const expiresAt = this.codes.get(key);
    this.codes.delete(key);
    if (expiresAt === undefined || expiresAt <= this.clock.now()) return undefined;
    this.prune();
    if (this.store.count() >= MAX_SESSIONS) this.store.removeLeastRecent();
    const id = randomBytes(32).toString('base64url');
    const now = this.clock.now();
    this.store.put(digest(id), { createdAt: now, lastUsedAt: now });
    return { id, session: { csrf: csrfOf(id), createdAt: now, lastUsedAt: now } };
  }

  /** The live session a cookie's value names (its idle time restarts), or undefined. */
  session(id: string | undefined): WebSession | undefined {
    if (!id) return undefined;
    const key = digest(id);
    const stored = this.store.get(key);
    if (!stored) return undefined;
    const now = this.clock.now();
    if (expired(stored, now)) {
      this.store.remove(key);
      return undefined;
    }
    if (now - stored.lastUsedAt >= TOUCH_EVERY_MS) this.store.touch(key, now);
    return { csrf: csrfOf(id), createdAt: stored.createdAt, lastUsedAt: now };
  }

  /** Signs a session out: its cookie no longer works, also after a restart. */
  end(id: string | undefined): void {
    if (id) this.store.remove(digest(id));
  }

  private prune(): void {
    const now = this.clock.now();
    for (const [key, expiresAt] of this.codes) if (expiresAt <= now) this.codes.delete(key);
    this.store.prune(now - SESSION_IDLE_MS - TOUCH_EVERY_MS, now - SESSION_MAX_MS);
  }
}

/**
 * Whether a session is past its idle time or its life. The idle time counts from the last use
 * written, which may be up to TOUCH_EVERY_MS older than the last use: a session may end that much
 * early, never late. (`prune` allows for the unwritten use: it removes only what is surely expired.)
 */
function expired(session: StoredSession, now: number): boolean {
  return now - session.lastUsedAt > SESSION_IDLE_MS || now - session.createdAt > SESSION_MAX_MS;
}

/** The session's CSRF value: derived from its id (which only the cookie holds), so nothing secret is stored. */
function csrfOf(id: string): string {
  return createHash('sha256').update(`cycle-csrf\0${id}`).digest('base64url');
}

/** Sessions in memory: what unit tests use (and a server given no database). */
export class MemorySessionStore implements SessionStore {
  private readonly sessions = new Map<string, StoredSession>();
  get(key: string): StoredSession | undefined {
    const session = this.sessions.get(key);
    return session && { ...session };
  }
  put(key: string, session: StoredSession): void {
    this.sessions.set(key, { ...session });
  }
  touch(key: string, lastUsedAt: number): void {
    const session = this.sessions.get(key);
    if (session) session.lastUsedAt = lastUsedAt;
  }
  remove(key: string): void {
    this.sessions.delete(key);
  }
  prune(idleBefore: number, createdBefore: number): void {
    for (const [key, s] of this.sessions) if (s.lastUsedAt <= idleBefore || s.createdAt <= createdBefore) this.sessions.delete(key);
  }
  count(): number {
    return this.sessions.size;
  }
  removeLeastRecent(): void {
    let oldest: [string, number] | undefined;
    for (const [key, s] of this.sessions) if (!oldest || s.lastUsedAt < oldest[1]) oldest = [key, s.lastUsedAt];
    if (oldest) this.sessions.delete(oldest[0]);
  }
}

/** Sessions in the server's database (`web_sessions`): a restart keeps them; sign-out and expiry remove them. */
export class SqliteSessionStore implements SessionStore {
  constructor(private readonly db: DB) {}
  get(key: string): StoredSession | undefined {
    const row = this.db.prepare('SELECT created_ms, last_used_ms FROM web_sessions WHERE hash = ?').get(key) as
      | { created_ms: number; last_used_ms: number }
      | undefined;
    return row && { createdAt: row.created_ms, lastUsedAt: row.last_used_ms };
  }
  put(key: string, session: StoredSession): void {
    this.db.prepare('INSERT OR REPLACE INTO web_sessions (hash, created_ms, last_used_ms) VALUES (?, ?, ?)').run(key, session.createdAt, session.lastUsedAt);
  }
  touch(key: string, lastUsedAt: number): void {
    this.db.prepare('UPDATE web_sessions SET last_used_ms = ? WHERE hash = ?').run(lastUsedAt, key);
  }
  remove(key: string): void {
    this.db.prepare('DELETE FROM web_sessions WHERE hash = ?').run(key);
  }
  prune(idleBefore: number, createdBefore: number): void {
    this.db.prepare('DELETE FROM web_sessions WHERE last_used_ms <= ? OR created_ms <= ?').run(idleBefore, createdBefore);
  }
  count(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM web_sessions').get() as { n: number }).n;
  }
  removeLeastRecent(): void {
    this.db.prepare('DELETE FROM web_sessions WHERE hash = (SELECT hash FROM web_sessions ORDER BY last_used_ms LIMIT 1)').run();
  }
}

function digest(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** A cookie's value from a `Cookie` header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const at = part.indexOf('=');
    if (at !== -1 && part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}
