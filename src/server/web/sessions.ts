import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../context.js';
import { systemClock } from '../../context.js';

/*
 * The web page's sign-in (docs/design.md, "The web page"): a one-time sign-in code, made for a
 * holder of the API token (`cycle dashboard`, the server's start-up output), is traded once for a
 * session: a random id kept in an HttpOnly, SameSite=Strict cookie, and a CSRF value the page
 * reads from `GET /api/v1/session` and sends back on every change. The token itself never reaches
 * the browser. Kept in memory only: a restart signs every page out (a new link signs in again).
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

/** The one-time codes and sessions of this server, keyed by the SHA-256 of their secret (a lookup never compares secrets byte by byte). */
export class WebSessions {
  private readonly codes = new Map<string, number>();
  private readonly sessions = new Map<string, WebSession>();
  /** Set once the server listens (sessionCookieName). */
  cookieName = 'cycle_session';

  constructor(private readonly clock: Clock = systemClock) {}

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
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    const id = randomBytes(32).toString('base64url');
    const now = this.clock.now();
    const session = { csrf: randomBytes(24).toString('base64url'), createdAt: now, lastUsedAt: now };
    this.sessions.set(digest(id), session);
    return { id, session };
  }

  /** The live session a cookie's value names (its idle time restarts), or undefined. */
  session(id: string | undefined): WebSession | undefined {
    if (!id) return undefined;
    const key = digest(id);
    const session = this.sessions.get(key);
    if (!session) return undefined;
    const now = this.clock.now();
    if (now - session.lastUsedAt > SESSION_IDLE_MS || now - session.createdAt > SESSION_MAX_MS) {
      this.sessions.delete(key);
      return undefined;
    }
    session.lastUsedAt = now;
    return session;
  }

  /** Signs a session out: its cookie no longer works. */
  end(id: string | undefined): void {
    if (id) this.sessions.delete(digest(id));
  }

  private prune(): void {
    const now = this.clock.now();
    for (const [key, expiresAt] of this.codes) if (expiresAt <= now) this.codes.delete(key);
    for (const [key, s] of this.sessions) if (now - s.lastUsedAt > SESSION_IDLE_MS || now - s.createdAt > SESSION_MAX_MS) this.sessions.delete(key);
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
