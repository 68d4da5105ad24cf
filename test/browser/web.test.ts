import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, writeFiles } from '../helpers/context.js';
import { cycle, removeTestProjectImages, testProjectName, waitFor } from '../helpers/e2e.js';
import { client, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { cpuInventory, gpuInventory, IDLE, OLDER_DRIVER } from '../helpers/machines.js';

/*
 * The web page in a real browser (Debian's chromium, driven by playwright-core), against the real
 * server binary running jobs on real Docker, with jobs submitted by the real CLI. Screenshots of
 * every page (1280×800 and phone width, light and dark) go to test-output/screenshots/.
 */
const CHROMIUM = process.env.CYCLE_TEST_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = path.join(import.meta.dirname, '..', '..', 'test-output', 'screenshots');
const PROJECT = testProjectName('web');
const HOSTILE = '<img src=x onerror=window.__pwned=1>';
const HOSTILE_SCRIPT = '<script>window.__pwned=1</script>';
/** The bytes the task writes as data.bin (the download must match them exactly). */
const DATA_BIN = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7 + 3) % 256));

let server: ServerProcess;
let env: Record<string, string>;
let projectDir: string;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let api: ReturnType<typeof client>;

const TASK = `import json, os, pathlib, sys, time
p = json.loads(pathlib.Path(os.environ["COMPUTALOT_TASK_PAYLOAD"]).read_text())
art = pathlib.Path(os.environ["CYCLE_ARTIFACTS_DIR"])
n = p.get("progress", 0)
for i in range(n):
    print("COMPUTALOT_PROGRESS:" + json.dumps({"step": i, "loss": 1.0 / (i + 1) + p.get("seed", 0), "acc": i / n}), flush=True)
for i in range(p.get("slow_progress", 0)):
    print("COMPUTALOT_PROGRESS:" + json.dumps({"step": i, "loss": 1.0 / (i + 1)}), flush=True)
    time.sleep(0.25)
for i in range(p.get("ticks", 0)):
    print("tick %d" % i, flush=True)
    time.sleep(0.25)
if p.get("hostile"):
    print("${HOSTILE_SCRIPT}", flush=True)
    print('<img src=x onerror="window.__pwned=1">', flush=True)
    print("\\x1b]0;evil-title\\x07\\x1b]8;;javascript:window.__pwned=1\\x1b\\\\click me\\x1b]8;;\\x1b\\\\ \\x1b[31mred text\\x1b[0m", flush=True)
    (art / "${HOSTILE}.txt").write_text("${HOSTILE_SCRIPT}")
if p.get("bytes"):
    (art / "data.bin").write_bytes(bytes((i * 7 + 3) % 256 for i in range(p["bytes"])))
    (art / "note.json").write_text(json.dumps({"hello": "world"}))
time.sleep(p.get("sleep", 0))
pathlib.Path(os.environ["COMPUTALOT_TASK_RESULT"]).write_text(json.dumps({"ok": True, "note": "${HOSTILE_SCRIPT}" if p.get("hostile") else "fine"}))
`;

async function submit(args: string[]): Promise<string> {
  const result = await cycle(['job', 'submit', ...args], { cwd: projectDir, env });
  expect(result.stdout, result.stderr).toMatch(/^job_[0-9a-z]+\n$/);
  return result.stdout.trim();
}

async function signInLink(): Promise<string> {
  const result = await cycle(['dashboard', '--no-open'], { cwd: projectDir, env });
  expect(result.code, result.stderr).toBe(0);
  // Not a terminal: only the link.
  expect(result.stdout).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/signin\?code=[A-Za-z0-9_-]+\n$/);
  return result.stdout.trim();
}

/** Everything a script on the page could reach: the address, the document, storage and script-visible cookies. */
async function pageSecrets(target: Page): Promise<string> {
  // A string: evaluated in the page (the test's own types have no DOM).
  const inPage = await target.evaluate<string>(
    'JSON.stringify({ url: location.href, html: document.documentElement.outerHTML, local: Object.entries(localStorage), session: Object.entries(sessionStorage), cookie: document.cookie })',
  );
  return `${target.url()}\n${await target.content()}\n${inPage}`;
}

/** The chart's x range shown, as its element says it. */
async function chartRange(): Promise<[number, number]> {
  return ((await page.locator('.chart').getAttribute('data-x-range')) ?? ',').split(',').map(Number) as [number, number];
}

/**
 * Drags across the chart, from and to these shares of its width, until it is zoomed in (its range
 * no longer starts at the first x, 0 here): again if the chart was drawn anew under the mouse.
 */
async function zoomChart(from: number, to: number): Promise<void> {
  await waitFor(
    async () => {
      const plot = await page.locator('.u-over').boundingBox();
      if (!plot) return false;
      await page.mouse.move(plot.x + plot.width * from, plot.y + plot.height / 2);
      await page.mouse.down();
      await page.mouse.move(plot.x + plot.width * to, plot.y + plot.height / 2, { steps: 5 });
      await page.mouse.up();
      return (await chartRange())[0] > 0;
    },
    10_000,
    'the chart to zoom in',
  );
}

/** The page's DOM as the functions sent to it use it (the tests are type-checked without the DOM library). */
declare const document: { querySelectorAll(selectors: string): { length: number } };

/**
 * At phone width: whether the page scrolls sideways, and which of its buttons, links and fields
 * lie off the side of the screen (in a table that scrolls inside its box, say).
 */
async function offScreen(target: Page): Promise<{ pageWider: boolean; controls: string[] }> {
  return target.evaluate<{ pageWider: boolean; controls: string[] }>(`(() => {
    const width = document.documentElement.clientWidth;
    const controls = [...document.querySelectorAll('main button, main a, main input, main select')]
      .filter((e) => { const r = e.getBoundingClientRect(); return r.width > 0 && (r.right > width + 0.5 || r.left < -0.5); })
      .map((e) => (e.textContent || e.getAttribute('aria-label') || e.tagName).trim());
    return { pageWider: document.documentElement.scrollWidth > width, controls };
  })()`);
}

async function shoot(name: string, target: Page = page): Promise<void> {
  for (const [label, size] of [
    ['desktop', { width: 1280, height: 800 }],
    ['phone', { width: 390, height: 844 }],
  ] as const) {
    for (const scheme of ['light', 'dark'] as const) {
      await target.setViewportSize(size);
      await target.emulateMedia({ colorScheme: scheme });
      // Two frames: the chart redraws its canvas in the new scheme's colours.
      await target.evaluate('new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))');
      await target.screenshot({ path: path.join(SHOTS, `${name}-${label}-${scheme}.png`), fullPage: label === 'desktop' });
    }
    if (label === 'phone') expect(await offScreen(target), `${name} at 390 px: what needs a sideways scroll`).toEqual({ pageWider: false, controls: [] });
  }
  await target.setViewportSize({ width: 1280, height: 800 });
  await target.emulateMedia({ colorScheme: 'light' });
}

beforeAll(async () => {
  await fs.mkdir(SHOTS, { recursive: true });
  server = await startServerProcess({ workers: 3 });
  api = client(server);
  env = { CYCLE_API_URL: server.url, CYCLE_TOKEN: server.token, XDG_CONFIG_HOME: await tempDir('cycle-web-cfg-') };
  projectDir = await tempDir('cycle-web-project-');
  await writeFiles(projectDir, {
    '.cycleswap/manifest.toml': `[main]\nname = "${PROJECT}"\nvolumes = []\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n`,
    '.cycleswap/run.sh': 'python3 task.py\n',
    '.cycleswap/build.sh': 'true\n',
    'task.py': TASK,
  });
  const uploaded = await cycle(['project', 'upload'], { cwd: projectDir, env });
  if (uploaded.code !== 0) throw new Error(`project upload failed: ${uploaded.stderr}`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  page = await context.newPage();
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  await removeTestProjectImages([PROJECT]);
});

describe('the web page, in a real browser', () => {
  it("signs in with a one-time link: a clean address, an HttpOnly SameSite=Strict cookie, the token nowhere the page's script can reach", async () => {
    // The server's start-up output has a link too (on stdout).
    expect(server.log()).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/signin\?code=[A-Za-z0-9_-]+$/m);
    const link = await signInLink();
    const response = await page.goto(link);
    expect(page.url()).toBe(`${server.url}/`);
    await page.getByRole('heading', { name: 'Jobs' }).waitFor();
    const csp =
      (await response!.request().redirectedFrom()?.response())?.headers()['content-security-policy'] ?? response!.headers()['content-security-policy'];
    expect(response!.headers()['content-security-policy']).toContain("script-src 'self'");
    expect(csp).toBeTruthy();
    const cookies = await context.cookies();
    expect(cookies).toHaveLength(1);
    expect(cookies[0]).toMatchObject({ name: `cycle_session_${new URL(server.url).port}`, httpOnly: true, sameSite: 'Strict', path: '/' });
    const secrets = await pageSecrets(page);
    expect(secrets).not.toContain(server.token);
    expect(secrets).not.toContain(cookies[0]!.value);
    expect(secrets).not.toContain(new URL(link).searchParams.get('code')!);
    // The link is spent.
    const again = await (await browser.newPage()).goto(link);
    expect(again!.status()).toBe(410);
  });

  it('shows a job submitted from the CLI without a reload', async () => {
    await page.goto(`${server.url}/jobs`);
    await page.getByRole('heading', { name: 'Jobs' }).waitFor();
    await page.evaluate('window.__sameDocument = true');
    const id = await submit(['--payload', '{"progress": 3}', '--tag', 'web-live']);
    await page.locator(`tr[data-job="${id}"]`).waitFor({ timeout: 60_000 });
    // Finished, live too: its status changes on the page.
    await page.locator(`tr[data-job="${id}"] .status-completed`).waitFor({ timeout: 120_000 });
    expect(await page.evaluate('window.__sameDocument')).toBe(true);
    // The tag filter: none for another tag, only that job for its own.
    await page.getByLabel('Tag').fill('no-such-tag');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByText('No jobs match these filters').waitFor();
    expect(await page.locator('tr[data-job]').count()).toBe(0);
    await page.getByLabel('Tag').fill('web-live');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(`${server.url}/jobs?tag=web-live`);
    // A function, not a string: Playwright polls a string with eval in the page, which the page's CSP refuses.
    await page.waitForFunction(() => document.querySelectorAll('tr[data-job]').length === 1);
    expect(await page.locator('tr[data-job]').getAttribute('data-job')).toBe(id);
    // Its full id links to its own page.
    await page.getByRole('link', { name: id }).click();
    await page.waitForURL(`${server.url}/jobs/${id}`);
    await page.getByRole('heading', { name: id }).waitFor();
  });

  it('draws one progress curve per task with every point, and downloads an artifact byte for byte', async () => {
    const items = path.join(projectDir, 'items.json');
    await fs.writeFile(items, JSON.stringify([0, 1, 2].map((seed) => ({ progress: 60, seed, bytes: seed === 0 ? DATA_BIN.length : 0 }))));
    const id = await submit(['--fan-out-items', `@${items}`, '--wait']);
    // Sixty lines printed at once: every point kept (not one per report).
    const series = (await api.call('GET', `/api/v1/jobs/${id}/progress`)).body;
    expect(series.tasks.map((t: { points_total: number }) => t.points_total)).toEqual([60, 60, 60]);
    expect(series.fields).toEqual(['acc', 'loss', 'step']);
    await page.goto(`${server.url}/jobs/${id}`);
    const chart = page.locator('.chart[data-series="3"]');
    await chart.waitFor();
    expect(await chart.getAttribute('data-points')).toBe('60,60,60');
    expect(await page.locator('.chart canvas').count()).toBe(1);
    expect(await page.locator('.u-legend .u-series').count()).toBe(4); // x and three tasks
    // Another field.
    await page.getByLabel('Field').selectOption('loss');
    await page.locator('.chart[data-series="3"]').waitFor();
    // Zoom: a drag across the chart narrows the x range; a double-click zooms out.
    const ticks = async () => (await page.locator('.chart').getAttribute('data-x-range')) ?? '';
    const before = await ticks();
    expect(before).toBe('0,59');
    await zoomChart(0.1, 0.3);
    const [from, to] = (await ticks()).split(',').map(Number);
    expect(from).toBeGreaterThan(0);
    expect(to).toBeLessThan(59);
    await page.locator('.u-over').dblclick();
    await waitFor(async () => (await ticks()) === before, 10_000, 'the chart to zoom out');
    await shoot('job');
    // The artifact, downloaded from the page.
    const row = page.locator('tr', { hasText: 'data.bin' });
    const [download] = await Promise.all([page.waitForEvent('download'), row.getByRole('link', { name: 'Download' }).click()]);
    expect(download.suggestedFilename()).toBe('data.bin');
    expect((await fs.readFile((await download.path())!)).equals(DATA_BIN)).toBe(true);
    // A JSON artifact previews inline.
    await page.locator('tr', { hasText: 'note.json' }).getByRole('button', { name: 'Preview' }).click();
    await page.locator('.preview pre').filter({ hasText: '"hello": "world"' }).waitFor();
    // Task 0's log: its two [cycle] lines, and no empty line drawn or counted after the last.
    await page.getByText('2 lines', { exact: true }).waitFor();
    expect(await page.locator('.log-line').allTextContents()).toEqual([expect.stringMatching(/task 0 started/), expect.stringMatching(/task 0 succeeded/)]);
  });

  it("keeps a zoom while a running job's points arrive, and follows them again once zoomed out", async () => {
    const id = await submit(['--payload', '{"slow_progress": 80}']);
    await page.goto(`${server.url}/jobs/${id}`);
    const chart = page.locator('.chart[data-series="1"]');
    const points = async () => Number((await chart.getAttribute('data-points')) ?? 0);
    await waitFor(async () => (await chart.count()) === 1 && (await points()) >= 8, 120_000, 'the first points');
    await zoomChart(0.2, 0.6);
    const zoomed = await chartRange();
    const seen = await points();
    await waitFor(async () => (await points()) >= seen + 4, 60_000, 'more points');
    expect(await chartRange()).toEqual(zoomed);
    // Zoomed out, the range follows the points again.
    await page.locator('.u-over').dblclick();
    await waitFor(async () => (await chartRange())[0] === 0, 10_000, 'the chart to zoom out');
    const [, end] = await chartRange();
    await waitFor(
      async () => (await chartRange())[1] > end,
      60_000,
      'the range to follow new points',
      async () => `${await chartRange()}, ${await points()} points`,
    );
    await api.call('PUT', `/api/v1/jobs/${id}/cancel`);
  });

  it("follows a running task's log live, [cycle] lines told apart", async () => {
    const id = await submit(['--payload', '{"ticks": 60}']);
    await page.goto(`${server.url}/jobs/${id}`);
    await page.locator('.log-line', { hasText: 'tick 2' }).first().waitFor({ timeout: 120_000 });
    const seenAt = await page.locator('.log-line').count();
    await page.locator('.log-line', { hasText: 'tick 20' }).first().waitFor({ timeout: 60_000 });
    expect(await page.locator('.log-line').count()).toBeGreaterThan(seenAt);
    expect(await page.locator('.log-line.system').first().textContent()).toMatch(/^\[cycle\] task 0 started/);
    await page.getByLabel('Search the log').fill('tick 1');
    expect(await page.locator('.log-line').allTextContents()).toContain('tick 1');
    expect((await page.locator('.log-line').allTextContents()).every((line) => line.includes('tick 1'))).toBe(true);
  });

  it('cancels a job from the page; a cross-site cancel is refused', async () => {
    const id = await submit(['--payload', '{"sleep": 120}']);
    await waitFor(async () => (await api.call('GET', `/api/v1/jobs/${id}`)).body.status === 'running', 120_000, 'the job to run');
    // Another site (localhost is not 127.0.0.1's site) tries with the browser's cookie: a form POST and a fetch PUT.
    const evil = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(
        `<form id=f method=POST action="${server.url}/api/v1/jobs/${id}/cancel"></form><script>` +
          `fetch(${JSON.stringify(`${server.url}/api/v1/jobs/${id}/cancel`)}, {method: 'PUT', credentials: 'include'}).catch(() => {}).finally(() => { document.title = 'tried'; document.getElementById('f').submit(); });</script>`,
      );
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    try {
      const evilPage = await context.newPage();
      const answered = evilPage.waitForResponse((r) => r.url().endsWith(`/api/v1/jobs/${id}/cancel`) && r.request().method() === 'POST');
      await evilPage.goto(`http://localhost:${(evil.address() as AddressInfo).port}/`);
      expect([401, 403, 405]).toContain((await answered).status());
      await evilPage.close();
    } finally {
      evil.close();
    }
    // With the session cookie itself, from another origin: 403.
    const cookie = (await context.cookies()).find((c) => c.name.startsWith('cycle_session'))!;
    const crossSite = await fetch(`${server.url}/api/v1/jobs/${id}/cancel`, {
      method: 'PUT',
      headers: { Cookie: `${cookie.name}=${cookie.value}`, Origin: 'http://localhost:1', 'Sec-Fetch-Site': 'cross-site' },
    });
    expect(crossSite.status).toBe(403);
    expect((await api.call('GET', `/api/v1/jobs/${id}`)).body.status).toBe('running');
    // From the page: cancelled.
    await page.goto(`${server.url}/jobs/${id}`);
    await page.getByRole('button', { name: 'Cancel job' }).click();
    await page.locator('.job-head .status-cancelled').waitFor({ timeout: 60_000 });
    expect((await api.call('GET', `/api/v1/jobs/${id}`)).body.status).toBe('cancelled');
  });

  it('the machines page shows each machine and drains / undrains it; a cross-site drain is refused', async () => {
    // Two machines enrol by heartbeating with their tokens over HTTP (no daemon, no Docker needed).
    for (const [name, inventory] of [
      ['gpu-a', gpuInventory(OLDER_DRIVER)],
      ['cpu-b', cpuInventory()],
    ] as const) {
      const { token } = (await api.call('POST', '/api/v1/machines/tokens', { name })).body as { token: string };
      const beat = await fetch(`${server.url}/api/v1/machine/heartbeat`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ name, slots: 2, inventory, activity: IDLE }),
      });
      expect(beat.status, await beat.text()).toBe(200);
    }
    await page.goto(`${server.url}/machines`);
    const gpuRow = page.locator('tr[data-machine="gpu-a"]');
    await gpuRow.waitFor();
    expect(await gpuRow.textContent()).toMatch(/idle.*A100.*550\.144\.03 \/ 12\.4.*0\/2/);
    expect(await page.locator('tr[data-machine="cpu-b"]').textContent()).toMatch(/idle.*none.*nvidia-smi: command not found/);
    await shoot('machines');
    // Another site tries to drain gpu-a with the browser's cookie (a form POST), and with the cookie itself from another origin.
    const evil = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(`<form id=f method=POST action="${server.url}/api/v1/machines/gpu-a/drain"></form><script>document.getElementById('f').submit();</script>`);
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    try {
      const evilPage = await context.newPage();
      const answered = evilPage.waitForResponse((r) => r.url().endsWith('/api/v1/machines/gpu-a/drain') && r.request().method() === 'POST');
      await evilPage.goto(`http://localhost:${(evil.address() as AddressInfo).port}/`);
      expect([401, 403]).toContain((await answered).status());
      await evilPage.close();
    } finally {
      evil.close();
    }
    const cookie = (await context.cookies()).find((c) => c.name.startsWith('cycle_session'))!;
    for (const method of ['POST', 'DELETE']) {
      const crossSite = await fetch(`${server.url}/api/v1/machines/gpu-a/drain`, {
        method,
        headers: { Cookie: `${cookie.name}=${cookie.value}`, Origin: 'http://localhost:1', 'Sec-Fetch-Site': 'cross-site', 'Content-Type': 'application/json' },
        ...(method === 'POST' ? { body: '{}' } : {}),
      });
      expect(crossSite.status).toBe(403);
    }
    // The cookie without the page's CSRF value, from the same origin: refused too.
    const noCsrf = await fetch(`${server.url}/api/v1/machines/gpu-a/drain`, {
      method: 'POST',
      headers: { Cookie: `${cookie.name}=${cookie.value}`, Origin: server.url, 'Content-Type': 'application/json' },
      body: '{}',
    });
    expect(noCsrf.status).toBe(403);
    expect((await api.call('GET', '/api/v1/machines/gpu-a')).body.state).toBe('idle');
    // From the page: drained, then undrained.
    await gpuRow.getByRole('button', { name: 'Drain' }).click();
    await gpuRow.locator('.status-draining').waitFor();
    expect((await api.call('GET', '/api/v1/machines/gpu-a')).body.state).toBe('draining');
    await shoot('machines-draining');
    await gpuRow.getByRole('button', { name: 'Undrain' }).click();
    await gpuRow.locator('.status-idle').waitFor();
    expect((await api.call('GET', '/api/v1/machines/gpu-a')).body.state).toBe('idle');
    // The session's own GET of one machine works with the cookie alone.
    const one = await page.evaluate<{ name: string }>("fetch('/api/v1/machines/cpu-b').then((r) => r.json())");
    expect(one.name).toBe('cpu-b');
  });

  it('renders hostile names, tags, log lines, file names and results as inert text', async () => {
    const id = await submit(['--payload', '{"hostile": true}', '--tag', HOSTILE, '--meta', `name=${HOSTILE_SCRIPT}`, '--variant', HOSTILE, '--wait']);
    await page.goto(`${server.url}/jobs`);
    await page.locator(`tr[data-job="${id}"] .tag`, { hasText: HOSTILE }).waitFor();
    await shoot('jobs');
    await page.goto(`${server.url}/jobs/${id}`);
    await page.locator('.log-line', { hasText: HOSTILE_SCRIPT }).waitFor();
    await page.locator('td', { hasText: `${HOSTILE}.txt` }).waitFor();
    await page
      .locator('tr', { hasText: `${HOSTILE}.txt` })
      .getByRole('button', { name: 'Preview' })
      .click();
    await page.locator('.preview pre', { hasText: HOSTILE_SCRIPT }).waitFor();
    await page.locator('td', { hasText: HOSTILE_SCRIPT }).first().waitFor(); // the result
    expect(await page.evaluate('window.__pwned')).toBeUndefined();
    expect(await page.locator('main img, main script, main a[href^="javascript"]').count()).toBe(0);
    expect(await page.title()).not.toContain('evil');
    const logText = (await page.locator('.log-text').textContent())!;
    expect(logText).toContain('click me red text');
    expect(logText).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
    expect(await page.locator('.log-line .fg-1', { hasText: 'red text' }).count()).toBe(1);
    await shoot('job-hostile');
  });

  it('shows projects, volumes, machines (the two the machines test enrolled) and the account', async () => {
    for (const [section, expected] of [
      ['Projects', PROJECT],
      ['Volumes', 'No volumes'],
      ['Machines', 'cpu-b'],
      ['Account', 'Available'],
    ] as const) {
      await page.getByRole('navigation', { name: 'sections' }).getByRole('link', { name: section }).click();
      await page.getByText(expected).first().waitFor();
      await shoot(section.toLowerCase());
    }
    expect(await pageSecrets(page)).not.toContain(server.token);
  });

  it("pages a volume's files on the server (Previous / Next), not only the first ones", async () => {
    const dir = await tempDir('cycle-web-volume-');
    await writeFiles(dir, Object.fromEntries(Array.from({ length: 230 }, (_, i) => [`file-${String(i).padStart(3, '0')}.txt`, `${i}\n`])));
    const uploaded = await cycle(['volume', 'upload', dir, '--name', 'many-files'], { cwd: projectDir, env });
    expect(uploaded.code, uploaded.stderr).toBe(0);
    await page.goto(`${server.url}/volumes`);
    await page.locator('tr[data-volume="many-files"]').getByRole('button', { name: 'Files' }).click();
    const paths = () => page.locator('table.files td.mono:first-child').allTextContents();
    await page.getByText('Files 1–100 of 230').waitFor();
    expect((await paths())[0]).toBe('file-000.txt');
    expect(await paths()).toHaveLength(100);
    await page.getByRole('button', { name: 'Next files' }).click();
    await page.getByText('Files 101–200 of 230').waitFor();
    expect((await paths())[0]).toBe('file-100.txt');
    await page.getByRole('button', { name: 'Next files' }).click();
    await page.getByText('Files 201–230 of 230').waitFor();
    expect(await paths()).toHaveLength(30);
    expect((await paths()).at(-1)).toBe('file-229.txt');
    expect(await page.getByRole('button', { name: 'Next files' }).count()).toBe(0);
    await shoot('volume-files');
    await page.getByRole('button', { name: 'Previous files' }).click();
    await page.getByText('Files 101–200 of 230').waitFor();
  });

  it("pages results 50 at a time, draws the tasks the user ticks (any window), and shows every task's log interleaved", async () => {
    const items = path.join(projectDir, 'many.json');
    await fs.writeFile(items, JSON.stringify(Array.from({ length: 55 }, (_, seed) => ({ progress: 4, seed }))));
    const id = await submit(['--fan-out-items', `@${items}`, '--wait']);
    await page.goto(`${server.url}/jobs/${id}`);
    // Results: 50, then the last 5, then back.
    const results = () => page.locator('tr[data-result]').evaluateAll((rows) => rows.map((r) => Number(r.getAttribute('data-result'))));
    await page.locator('tr[data-result="49"]').waitFor();
    expect(await results()).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(await page.getByRole('button', { name: 'Previous results' }).count()).toBe(0);
    await page.getByRole('button', { name: 'Next results' }).click();
    await page.locator('tr[data-result="54"]').waitFor();
    expect(await results()).toEqual([50, 51, 52, 53, 54]);
    expect(await page.getByRole('button', { name: 'Next results' }).count()).toBe(0);
    await page.getByRole('button', { name: 'Previous results' }).click();
    await page.locator('tr[data-result="0"]').waitFor();
    expect(await results()).toHaveLength(50);

    // The chart: the window's first 20 by default; no 21st can be ticked.
    await page.locator('.chart[data-series="20"]').waitFor();
    expect(await page.getByLabel('draw task 19').isChecked()).toBe(true);
    expect(await page.getByLabel('draw task 20').isChecked()).toBe(false);
    expect(await page.getByLabel('draw task 20').isDisabled()).toBe(true);
    // None, then tasks 33 and 45 of this window and 52 of the next.
    await page.getByRole('button', { name: 'Draw none' }).click();
    await page.getByText('No task ticked').waitFor();
    await page.getByLabel('draw task 33').check();
    await page.locator('.chart[data-series="1"]').waitFor();
    await page.getByLabel('draw task 45').check();
    await page.getByRole('button', { name: 'Next tasks' }).click();
    await page.getByLabel('draw task 52').check();
    await page.locator('.chart[data-series="3"]').waitFor();
    expect(await page.locator('.chart').getAttribute('data-points')).toBe('4,4,4');
    expect(await page.locator('.u-legend .u-series').allTextContents()).toEqual(
      expect.arrayContaining([expect.stringContaining('task 33'), expect.stringContaining('task 45'), expect.stringContaining('task 52')]),
    );
    await shoot('job-picked');
    await page.getByRole('button', { name: "Draw this window's first 20" }).click();
    await page.locator('.chart[data-series="5"]').waitFor(); // the second window: tasks 50 to 54

    // Every task's log, interleaved, each line with its task; one task again.
    await page.getByRole('button', { name: 'All tasks' }).click();
    await page.getByRole('heading', { name: 'Log of all tasks' }).waitFor();
    const system = page.locator('.log-line.system');
    await system.filter({ hasText: '[54] [cycle] task 54 succeeded' }).waitFor();
    const tasksInLog = new Set((await page.locator('.log-line .log-task').allTextContents()).map((t) => t.trim()));
    expect(tasksInLog.size).toBe(55);
    expect(await system.filter({ hasText: '[0] [cycle] task 0 started' }).count()).toBe(1);
    await shoot('job-all-logs');
    await page.getByRole('button', { name: 'One task' }).click();
    await page.getByRole('heading', { name: /^Log of task \d+$/ }).waitFor();
    expect(await page.locator('.log-line .log-task').count()).toBe(0);
  });

  it("follows every task's log live, interleaved", async () => {
    const items = path.join(projectDir, 'ticks.json');
    await fs.writeFile(items, JSON.stringify([{ ticks: 40 }, { ticks: 40 }]));
    const id = await submit(['--fan-out-items', `@${items}`]);
    await page.goto(`${server.url}/jobs/${id}`);
    await page.getByRole('button', { name: 'All tasks' }).click();
    for (const task of [0, 1])
      await page
        .locator('.log-line', { hasText: `[${task}] tick 3` })
        .first()
        .waitFor({ timeout: 120_000 });
    const seenAt = await page.locator('.log-line').count();
    for (const task of [0, 1])
      await page
        .locator('.log-line', { hasText: `[${task}] tick 20` })
        .first()
        .waitFor({ timeout: 60_000 });
    expect(await page.locator('.log-line').count()).toBeGreaterThan(seenAt);
    // Each line once: the live lines and a reload of the log do not repeat one.
    const lines = await page.locator('.log-line').allTextContents();
    expect(lines.filter((line) => line === '[0] tick 5')).toHaveLength(1);
    expect(lines.filter((line) => line === '[1] tick 5')).toHaveLength(1);
  });

  it('stays signed in across a server restart; signed out, the old cookie stays refused after another restart', async () => {
    const restart = async () => {
      await server.stop();
      server = await startServerProcess({ dataDir: server.dataDir, workers: 3, port: Number(new URL(server.url).port) });
    };
    await restart();
    await page.goto(`${server.url}/jobs`);
    await page.getByRole('heading', { name: 'Jobs' }).waitFor();
    await page.locator('tr[data-job]').first().waitFor();
    expect(await page.getByRole('heading', { name: 'Signed out' }).count()).toBe(0);

    const cookie = (await context.cookies()).find((c) => c.name.startsWith('cycle_session'))!;
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Signed out' }).waitFor();
    await shoot('signed-out');
    expect((await fetch(`${server.url}/api/v1/jobs`, { headers: { Cookie: `${cookie.name}=${cookie.value}` } })).status).toBe(401);
    await restart();
    expect((await fetch(`${server.url}/api/v1/jobs`, { headers: { Cookie: `${cookie.name}=${cookie.value}` } })).status).toBe(401);
    await page.goto(`${server.url}/jobs`);
    await page.getByRole('heading', { name: 'Signed out' }).waitFor();
  });
});
