import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/context.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { startFakeDockerServer } from '../helpers/server.js';
import type { RunningServer } from '../../src/server/index.js';
import { thin } from '../../src/server/jobs/progress.js';
import { ansiSegments } from '../../web/src/ansi.js';
import { cpuInventory, IDLE } from '../helpers/machines.js';

/*
 * The web page's sign-in and what its session cookie may do (docs/api.md, "The web page"): a
 * one-time code for a token holder, traded once for an HttpOnly SameSite=Strict cookie; the cookie
 * authenticates only the page's routes, and a change only from the page's own origin with its
 * CSRF value; sign-out ends the session on the server.
 */
describe('web sessions', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startFakeDockerServer(new FakeDocker(), { dataDir: await tempDir('cycle-web-session-') });
  });
  afterAll(() => server?.close());

  const bearer = () => ({ Authorization: `Bearer ${server.token}` });
  const link = async (): Promise<string> => {
    const response = await fetch(`${server.url}/api/v1/dashboard/links`, {
      method: 'POST',
      headers: { ...bearer(), 'Content-Type': 'application/json' },
      body: '{}',
    });
    expect(response.status).toBe(201);
    const body = (await response.json()) as { path: string; expires_at: string };
    expect(body.path).toMatch(/^\/signin\?code=[A-Za-z0-9_-]{20,}$/);
    expect(body.path).not.toContain(server.token);
    return body.path;
  };
  const signIn = async (): Promise<{ cookie: string; csrf: string }> => {
    const response = await fetch(`${server.url}${await link()}`, { redirect: 'manual' });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/');
    const setCookie = response.headers.get('set-cookie')!;
    // Named with the server's port: browsers send a host's cookies to all its ports.
    expect(setCookie).toMatch(new RegExp(`^cycle_session_${new URL(server.url).port}=[A-Za-z0-9_-]+; HttpOnly; SameSite=Strict; Path=/`));
    expect(setCookie).not.toContain('Secure');
    const cookie = setCookie.split(';')[0]!;
    const session = await fetch(`${server.url}/api/v1/session`, { headers: { Cookie: cookie } });
    expect(session.status).toBe(200);
    const { csrf } = (await session.json()) as { csrf: string };
    return { cookie, csrf };
  };

  it('makes sign-in links only for the token, each working once', async () => {
    expect((await fetch(`${server.url}/api/v1/dashboard/links`, { method: 'POST' })).status).toBe(401);
    const path = await link();
    expect((await fetch(`${server.url}${path}`, { redirect: 'manual' })).status).toBe(303);
    const again = await fetch(`${server.url}${path}`, { redirect: 'manual' });
    expect(again.status).toBe(410);
    expect(again.headers.get('set-cookie')).toBeNull();
    expect((await fetch(`${server.url}/signin?code=made-up`, { redirect: 'manual' })).status).toBe(410);
    // The start-up output's link is one too.
    const startup = new URL(server.signInLink());
    expect((await fetch(`${server.url}${startup.pathname}${startup.search}`, { redirect: 'manual' })).status).toBe(303);
  });

  it("authenticates the page's reads by cookie, and nothing else", async () => {
    const { cookie } = await signIn();
    expect((await fetch(`${server.url}/api/v1/jobs`, { headers: { Cookie: cookie } })).status).toBe(200);
    expect((await fetch(`${server.url}/api/v1/account/balance`, { headers: { Cookie: cookie } })).status).toBe(200);
    // Not a route the page calls: submitting, pushing, making links, reading kv.
    const submit = await fetch(`${server.url}/api/v1/jobs`, { method: 'POST', headers: { Cookie: cookie, 'Content-Type': 'application/json' }, body: '{}' });
    expect(submit.status).toBe(401);
    expect((await fetch(`${server.url}/api/v1/dashboard/links`, { method: 'POST', headers: { Cookie: cookie } })).status).toBe(401);
    expect((await fetch(`${server.url}/api/v1/projects/p/kv`, { headers: { Cookie: cookie } })).status).toBe(401);
    // A cookie that names no session, and a request from another site.
    expect((await fetch(`${server.url}/api/v1/jobs`, { headers: { Cookie: `cycle_session_${new URL(server.url).port}=forged` } })).status).toBe(401);
    expect((await fetch(`${server.url}/api/v1/jobs`, { headers: { Cookie: cookie, 'Sec-Fetch-Site': 'cross-site' } })).status).toBe(403);
  });

  it("refuses a change by cookie unless it comes from the page's origin with the CSRF value", async () => {
    const { cookie, csrf } = await signIn();
    const host = new URL(server.url).host;
    const cancel = (headers: Record<string, string>) =>
      fetch(`${server.url}/api/v1/jobs/job_nonexistent/cancel`, { method: 'PUT', headers: { Cookie: cookie, ...headers } });
    const refused = async (headers: Record<string, string>) => {
      const response = await cancel(headers);
      expect(response.status).toBe(403);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('cross_site_refused');
    };
    await refused({}); // no CSRF value: a cross-site form
    await refused({ 'X-Cycle-CSRF': 'wrong' });
    await refused({ 'X-Cycle-CSRF': csrf, Origin: 'https://evil.example' });
    await refused({ 'X-Cycle-CSRF': csrf, 'Sec-Fetch-Site': 'cross-site', Origin: `http://${host}` });
    await refused({ 'X-Cycle-CSRF': csrf, 'Sec-Fetch-Site': 'same-site' });
    // From the page: past authentication (the job does not exist).
    expect((await cancel({ 'X-Cycle-CSRF': csrf, Origin: `http://${host}`, 'Sec-Fetch-Site': 'same-origin' })).status).toBe(404);
  });

  it("drains and undrains a machine by cookie from the page's origin only; reads one machine", async () => {
    const { cookie, csrf } = await signIn();
    const host = new URL(server.url).host;
    const { token } = (await (
      await fetch(`${server.url}/api/v1/machines/tokens`, {
        method: 'POST',
        headers: { ...bearer(), 'Content-Type': 'application/json' },
        body: '{"name": "gpu-a"}',
      })
    ).json()) as { token: string };
    const beat = await fetch(`${server.url}/api/v1/machine/heartbeat`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'gpu-a', slots: 1, inventory: cpuInventory(), activity: IDLE }),
    });
    expect(beat.status).toBe(200);
    const drain = (method: 'POST' | 'DELETE', headers: Record<string, string>) =>
      fetch(`${server.url}/api/v1/machines/gpu-a/drain`, {
        method,
        headers: { Cookie: cookie, 'Content-Type': 'application/json', ...headers },
        ...(method === 'POST' ? { body: '{}' } : {}),
      });
    const page = { 'X-Cycle-CSRF': csrf, Origin: `http://${host}`, 'Sec-Fetch-Site': 'same-origin' };
    for (const method of ['POST', 'DELETE'] as const) {
      for (const headers of [{}, { ...page, Origin: 'https://evil.example' }, { ...page, 'Sec-Fetch-Site': 'cross-site' }]) {
        const refused = await drain(method, headers);
        expect(refused.status).toBe(403);
        expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('cross_site_refused');
      }
    }
    const state = async () => ((await (await fetch(`${server.url}/api/v1/machines/gpu-a`, { headers: { Cookie: cookie } })).json()) as { state: string }).state;
    expect(await state()).toBe('idle');
    expect((await drain('POST', page)).status).toBe(200);
    expect(await state()).toBe('draining');
    expect((await drain('DELETE', page)).status).toBe(200);
    expect(await state()).toBe('idle');
    // Removing a machine and making tokens stay the token's.
    expect((await fetch(`${server.url}/api/v1/machines/gpu-a`, { method: 'DELETE', headers: { Cookie: cookie, ...page } })).status).toBe(401);
  });

  it('signs out on the server: the cookie stops working', async () => {
    const { cookie, csrf } = await signIn();
    const out = await fetch(`${server.url}/api/v1/session`, { method: 'DELETE', headers: { Cookie: cookie, 'X-Cycle-CSRF': csrf } });
    expect(out.status).toBe(200);
    expect(out.headers.get('set-cookie')).toMatch(/cycle_session_\d+=; .*Max-Age=0/);
    expect((await fetch(`${server.url}/api/v1/jobs`, { headers: { Cookie: cookie } })).status).toBe(401);
  });

  it('serves the page and every answer with the security headers', async () => {
    const page = await fetch(`${server.url}/jobs/job_x`);
    expect(page.status).toBe(200);
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    const html = await page.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script
    expect(html).not.toContain(server.token);
    const asset = /src="(\/assets\/app-[A-Za-z0-9]+\.js)"/.exec(html)![1]!;
    const script = await fetch(`${server.url}${asset}`);
    expect(script.headers.get('cache-control')).toContain('immutable');
    expect(script.headers.get('content-type')).toContain('javascript');
    expect((await fetch(`${server.url}/assets/..%2Fpackage.json`)).status).toBe(404);
    const api = await fetch(`${server.url}/api/v1/health`);
    expect(api.headers.get('x-content-type-options')).toBe('nosniff');
    expect(api.headers.get('content-security-policy')).toContain('sandbox');
  });
});

describe('progress series thinning', () => {
  it('keeps at most max points, the first and the last among them', () => {
    const points = Array.from({ length: 10_000 }, (_, i) => i);
    const kept = thin(points, 1000);
    expect(kept).toHaveLength(1000);
    expect(kept[0]).toBe(0);
    expect(kept.at(-1)).toBe(9999);
    expect(thin(points.slice(0, 5), 1000)).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('log colours', () => {
  it('maps SGR colours to classes and drops every other sequence', () => {
    const segments = ansiSegments('\x1b[31mred\x1b[0m plain \x1b]0;title\x07\x1b]8;;https://evil\x1b\\link\x1b]8;;\x1b\\ \x1b[2Jgone\x07\x1b[1;32mbold green');
    expect(segments).toEqual([
      { text: 'red', classes: 'fg-1' },
      { text: ' plain link gone', classes: '' },
      { text: 'bold green', classes: 'fg-2 bold' },
    ]);
  });
});
