// The web page's budgets (docs/design.md, "Budgets"), in headless Chromium (Debian's, /usr/bin/chromium):
// a job of 10,000 tasks and 100,000 progress points is interactive in under 1 s; the page's script
// and styles together are at most 150 KB gzipped; the jobs list paints its first rows in at most 300 ms.
// The job is written straight into a stopped server's database (no Docker needed), then the real
// server serves it to the real page.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import Database from 'better-sqlite3';
import { CYCLE, ROOT, median, report, tempDir } from './lib.mjs';

const CHROMIUM = process.env.CYCLE_TEST_CHROMIUM ?? '/usr/bin/chromium';
const TASKS = 10_000;
const POINTS_PER_TASK = 10;
const JOBS = 300;

async function serve(data) {
  const child = spawn(process.execPath, [CYCLE, 'server', '--port', '0', '--data-dir', data, '--workers', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (c) => (log += c));
  child.stderr.on('data', (c) => (log += c));
  for (let i = 0; i < 200 && !/listening on/.test(log); i++) await new Promise((r) => setTimeout(r, 100));
  const url = /listening on (http:\/\/\S+)/.exec(log)?.[1];
  if (!url) throw new Error(`the server did not start: ${log}`);
  return {
    url,
    link: () => /^(http:\/\/\S+\/signin\?code=\S+)$/m.exec(log)?.[1],
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.on('close', r));
    },
  };
}

/** A finished job of TASKS tasks, each with POINTS_PER_TASK progress events, and JOBS small jobs, in the database. */
function seed(dbFile) {
  const db = new Database(dbFile);
  const at = (ms) => new Date(Date.parse('2026-12-01T00:00:00Z') + ms).toISOString();
  const request = (project, tags) => JSON.stringify({ project, type: 'structured_runner', payload: {}, tags, meta: {}, depends_on: [] });
  const insertJob = db.prepare(
    "INSERT INTO jobs (id, seq, project, revision, type, status, request, created_at, started_at, finished_at) VALUES (?, ?, ?, 1, 'structured_runner', 'completed', ?, ?, ?, ?)",
  );
  const insertTask = db.prepare(
    "INSERT INTO tasks (id, job_id, idx, kind, status, attempt, payload, result, exit_code, latest_progress, started_at, finished_at) VALUES (?, ?, ?, 'task', 'succeeded', 1, ?, '{\"ok\":true}', 0, ?, ?, ?)",
  );
  const insertEvent = db.prepare("INSERT INTO events (job_id, task_id, project, type, data, at) VALUES (?, ?, 'bench-web', ?, ?, ?)");
  db.transaction(() => {
    for (let j = 0; j < JOBS; j++) {
      const id = `job_bench${String(j).padStart(6, '0')}`;
      insertJob.run(id, j + 1, 'bench-web', request('bench-web', ['bench']), at(j), at(j), at(j + 1000));
      insertTask.run(`task_bench${j}`, id, 0, '{}', null, at(j), at(j + 1000));
    }
    const big = 'job_bigsweep0001';
    insertJob.run(big, JOBS + 1, 'bench-web', request('bench-web', ['sweep']), at(0), at(0), at(3600_000));
    for (let t = 0; t < TASKS; t++) {
      const task = `task_big${String(t).padStart(6, '0')}`;
      let last;
      for (let s = 0; s < POINTS_PER_TASK; s++) {
        last = { step: s, loss: 1 / (s + 1) + t / TASKS, acc: s / POINTS_PER_TASK };
        insertEvent.run(big, task, 'progress', JSON.stringify({ index: t, progress: last }), at(t * 10 + s));
      }
      insertTask.run(task, big, t, JSON.stringify({ lr: 0.001 * (1 + (t % 10)), seed: t }), JSON.stringify(last), at(t), at(t + 60_000));
    }
    insertEvent.run(big, null, 'job', JSON.stringify({ status: 'completed' }), at(3600_000));
  })();
  db.close();
  return 'job_bigsweep0001';
}

export async function benchWeb() {
  const assets = path.join(ROOT, 'dist', 'web', 'assets');
  if (!fs.existsSync(assets)) {
    console.log('   web: skipped (dist/web is missing: npm run build)');
    return;
  }
  const gzipped = fs
    .readdirSync(assets)
    .filter((f) => /\.(js|css)$/.test(f))
    .reduce((sum, f) => sum + zlib.gzipSync(fs.readFileSync(path.join(assets, f)), { level: 9 }).length, 0);
  report('web: script + styles, gzipped', (gzipped / 1024).toFixed(1), 'KB', '<= 150', gzipped <= 150 * 1024);
  if (spawnSync(CHROMIUM, ['--version'], { stdio: 'ignore' }).status !== 0) {
    console.log(`   web: page timings skipped (no Chromium at ${CHROMIUM}; scripts/setup.sh installs it)`);
    return;
  }
  const { chromium } = await import('playwright-core');
  const data = tempDir('cycle-bench-web-');
  let server = await serve(data);
  await server.stop();
  const jobId = seed(path.join(data, 'cycle.db'));
  server = await serve(data);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(server.link());
    await page.waitForSelector('tr[data-job]');
    // Warm: the assets are cached (as for a user's second visit); each run is a new navigation.
    const firstPaints = [];
    const jobPages = [];
    let shipped = 0;
    let drawn = '';
    for (let run = 0; run < 5; run++) {
      await page.goto(`${server.url}/jobs`, { waitUntil: 'commit' });
      await page.waitForSelector('tr[data-job]');
      firstPaints.push(await page.evaluate(() => performance.now()));
      let bytes = 0;
      const count = (response) =>
        response.url().includes('/api/v1/') &&
        response.body().then(
          (b) => (bytes += b.length),
          () => undefined,
        );
      page.on('response', count);
      await page.goto(`${server.url}/jobs/${jobId}`, { waitUntil: 'commit' });
      await page.waitForSelector('.chart[data-series] canvas');
      await page.waitForSelector('table.tasks tbody tr');
      await page.waitForSelector('.log-text');
      jobPages.push(await page.evaluate(() => performance.now()));
      drawn = await page.locator('.chart').getAttribute('data-points');
      page.off('response', count);
      await page.waitForTimeout(200);
      shipped = bytes;
    }
    const paint = median(firstPaints);
    const interactive = median(jobPages);
    const points = drawn.split(',').reduce((sum, n) => sum + Number(n), 0);
    report('web: jobs list, first rows painted', paint.toFixed(0), 'ms', '<= 300', paint <= 300, `(median of 5; ${JOBS} jobs, 50 a page)`);
    report(
      `web: job of ${TASKS.toLocaleString('en')} tasks, ${(TASKS * POINTS_PER_TASK).toLocaleString('en')} points, interactive`,
      interactive.toFixed(0),
      'ms',
      '< 1000',
      interactive < 1000,
      `(median of 5; ${points} points drawn, ${(shipped / 1024).toFixed(0)} KiB of API answers)`,
    );
  } finally {
    await browser.close();
    await server.stop();
    fs.rmSync(data, { recursive: true, force: true });
  }
}
