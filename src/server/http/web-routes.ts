import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SIGN_IN_CODE_TTL_MS, SESSION_MAX_MS, type WebSessions } from '../web/sessions.js';
import { headerValue, HttpError, readJson, type RouteContext, type Router, sendJson } from './router.js';

/*
 * The web page (docs/design.md, "The web page"): its shell and assets, built by `npm run build`
 * into dist/web (web/build.mjs), and its sign-in. The page is one more client of the API: every
 * datum it shows comes from the routes the CLI uses, which its session cookie authenticates
 * (src/server/web/session-routes.ts lists them).
 */

/** Where `npm run build` puts the page: the same from src/ (tests) and dist/ (the package). */
export const WEB_ROOT = fileURLToPath(new URL('../../../dist/web/', import.meta.url));

/** The page's policy: its own script and styles only, no inline script, nothing from another origin, never framed. */
export const PAGE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; font-src 'self'; " +
  "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/** The page's addresses (the page routes itself from the path). */
const PAGE_PATHS = ['/', '/jobs', '/jobs/:id', '/projects', '/volumes', '/machines', '/account', '/signed-out'];

export interface WebOptions {
  sessions: WebSessions;
  /** dist/web (WEB_ROOT unless a test builds elsewhere). */
  webRoot?: string;
}

export function addWebRoutes(router: Router, options: WebOptions): void {
  const root = options.webRoot ?? WEB_ROOT;
  const { sessions } = options;
  let shell: Buffer | undefined;
  const page = (ctx: RouteContext): void => {
    shell ??= readShell(root);
    if (!shell) {
      sendHtml(ctx, 503, notice('The web page is not built', 'This copy of cycle has no dist/web: run <code>npm run build</code> in its folder, then reload.'));
      return;
    }
    ctx.res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': shell.length, 'Cache-Control': 'no-store', ...pageHeaders() });
    ctx.res.end(shell);
  };
  for (const pagePath of PAGE_PATHS) router.add('GET', pagePath, page, { public: true });

  // Browsers ask for it unasked: nothing, rather than a 404 in the console.
  router.add(
    'GET',
    '/favicon.ico',
    (ctx) => {
      ctx.res.writeHead(204, { 'Cache-Control': 'public, max-age=86400' });
      ctx.res.end();
    },
    { public: true },
  );

  // Content-hashed names: cached for a year, never stale.
  router.add(
    'GET',
    '/assets/:file',
    (ctx) => {
      const file = ctx.params.file!;
      const type = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.(js|css|png|svg|woff2)$/.exec(file)?.[1];
      if (!type) throw new HttpError(404, 'not_found', `no asset ${file}`);
      let body: Buffer;
      try {
        body = fs.readFileSync(path.join(root, 'assets', file));
      } catch {
        throw new HttpError(404, 'not_found', `no asset ${file}`);
      }
      ctx.res.writeHead(200, {
        'Content-Type': ASSET_TYPES[type]!,
        'Content-Length': body.length,
        'Cache-Control': 'public, max-age=31536000, immutable',
        ...pageHeaders(),
      });
      ctx.res.end(body);
    },
    { public: true },
  );

  // A one-time link's code becomes a session cookie; the address bar is then cleaned (303 to /).
  router.add(
    'GET',
    '/signin',
    (ctx) => {
      const code = ctx.query.get('code') ?? '';
      const redeemed = code.length <= 200 ? sessions.redeem(code) : undefined;
      if (!redeemed) {
        sendHtml(
          ctx,
          410,
          notice('This sign-in link no longer works', 'A sign-in link works once, for 10 minutes. Run <code>cycle dashboard</code> for a new one.'),
        );
        return;
      }
      // Secure when served over HTTPS: this server's own TLS (`--tls-cert`), or a reverse proxy's.
      const overTls = (ctx.req.socket as { encrypted?: boolean }).encrypted === true;
      const secure = overTls || headerValue(ctx.req, 'x-forwarded-proto') === 'https' ? '; Secure' : '';
      ctx.res.writeHead(303, {
        Location: '/',
        'Set-Cookie': `${sessions.cookieName}=${redeemed.id}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${SESSION_MAX_MS / 1000}${secure}`,
        'Cache-Control': 'no-store',
        'Content-Length': 0,
        ...pageHeaders(),
      });
      ctx.res.end();
    },
    { public: true },
  );

  // `cycle dashboard`: a sign-in link for the holder of the token (never for a session).
  router.add('POST', '/api/v1/dashboard/links', async (ctx) => {
    await readJson(ctx.req, 1024);
    if (ctx.session) throw new HttpError(403, 'token_required', 'a sign-in link is made with the API token (cycle dashboard), not from the web page');
    const { code, expiresAt } = sessions.issueCode();
    const linkPath = `/signin?code=${code}`;
    sendJson(ctx.res, 201, { path: linkPath, expires_at: new Date(expiresAt).toISOString(), ttl_s: SIGN_IN_CODE_TTL_MS / 1000 });
  });

  // The page's session: its CSRF value (readable only by the page: no other origin can read an answer), and sign-out.
  router.add('GET', '/api/v1/session', (ctx) => {
    if (!ctx.session) throw new HttpError(401, 'unauthorized', 'no web session: open a sign-in link from cycle dashboard');
    sendJson(ctx.res, 200, { signed_in: true, csrf: ctx.session.session.csrf });
  });
  router.add('DELETE', '/api/v1/session', (ctx) => {
    if (!ctx.session) throw new HttpError(401, 'unauthorized', 'no web session: open a sign-in link from cycle dashboard');
    sessions.end(ctx.session.id);
    sendJson(ctx.res, 200, { signed_in: false }, { 'Set-Cookie': `${sessions.cookieName}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0` });
  });
}

const ASSET_TYPES: Record<string, string> = {
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  png: 'image/png',
  svg: 'image/svg+xml',
  woff2: 'font/woff2',
};

function pageHeaders(): Record<string, string> {
  return { 'Content-Security-Policy': PAGE_CSP, 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Resource-Policy': 'same-origin' };
}

function readShell(root: string): Buffer | undefined {
  try {
    return fs.readFileSync(path.join(root, 'index.html'));
  } catch {
    return undefined;
  }
}

/** A page of fixed text (no data in it), for a link that no longer works or a page not built. */
function notice(title: string, html: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${title} · cycle</title></head><body style="font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem"><h1>${title}</h1><p>${html}</p></body></html>`;
}

function sendHtml(ctx: RouteContext, status: number, html: string): void {
  // The notice's inline style attribute is allowed by its own policy (it carries no script, and no data).
  ctx.res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': Buffer.byteLength(html),
    'Cache-Control': 'no-store',
    ...pageHeaders(),
    'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
  });
  ctx.res.end(html);
}
