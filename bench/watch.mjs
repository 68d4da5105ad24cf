import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { CYCLE, dockerAvailable, report, tempDir } from './lib.mjs';

/** `cycle job watch` of a job of many tasks: the client's peak memory and how fast it ends after the job. */
export async function benchWatch() {
  if (!dockerAvailable()) {
    console.log('   job watch: skipped (Docker or the ubuntu:24.04 image is missing; run scripts/setup.sh)');
    return;
  }
  const tasks = Number(process.env.BENCH_WATCH_TASKS ?? 1000);
  const data = tempDir('cycle-bench-watch-');
  const project = tempDir('cycle-bench-watch-project-');
  fs.mkdirSync(path.join(project, '.cycleswap'));
  fs.writeFileSync(path.join(project, '.cycleswap/manifest.toml'), '[main]\nname = "bench-watch"\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n');
  fs.writeFileSync(path.join(project, '.cycleswap/run.sh'), 'echo "task $(cat "$COMPUTALOT_TASK_PAYLOAD")"\necho "COMPUTALOT_PROGRESS:{\\"done\\":1}"\n');
  fs.writeFileSync(path.join(project, '.cycleswap/build.sh'), 'true\n');
  const server = spawn(CYCLE, ['server', '--port', '0', '--data-dir', data, '--workers', '6'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  server.stderr.on('data', (c) => (log += c));
  for (let i = 0; i < 100 && !/listening on/.test(log); i++) await new Promise((r) => setTimeout(r, 100));
  const url = /listening on (http:\/\/\S+)/.exec(log)?.[1];
  const token = fs.readFileSync(path.join(data, 'token'), 'utf8').trim();
  const env = { ...process.env, CYCLE_API_URL: url, CYCLE_TOKEN: token, XDG_CONFIG_HOME: data, NO_COLOR: '1' };
  const run = (args, options = {}) =>
    new Promise((resolve, reject) => {
      const child = spawn(options.file ?? CYCLE, args, { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => (stdout += c));
      child.stderr.on('data', (c) => (stderr += c));
      child.on('close', (code) => (code === 0 ? resolve({ stdout, stderr, end: Date.now() }) : reject(new Error(`${args.join(' ')}: ${code}\n${stderr}`))));
    });
  try {
    await run(['project', 'upload', '-q']);
    const items = Array.from({ length: tasks }, (_, i) => JSON.stringify({ i })).join('\n');
    fs.writeFileSync(path.join(project, 'items.jsonl'), items);
    const id = (await run(['job', 'submit', '--fan-out-items', '@items.jsonl'])).stdout.trim();
    console.log(`   (job ${id}: ${tasks} tasks on 6 workers; watching)`);
    const watched = await run(['-f', 'CYCLE_MAXRSS_KB %M', CYCLE, 'job', 'watch', id, '--json'], { file: '/usr/bin/time' });
    const rss = Number(/CYCLE_MAXRSS_KB (\d+)/.exec(watched.stderr)[1]) / 1024;
    const taskList = JSON.parse((await run(['job', 'tasks', id, '--json'])).stdout);
    const lastEnd = Math.max(...taskList.map((t) => Date.parse(t.finished_at)));
    const events = watched.stdout.trim().split('\n').length;
    report(`job watch of a ${tasks}-task job: peak RSS`, rss.toFixed(0), 'MiB', '< 150 MiB', rss < 150, `(${events} events)`);
    report('  last task end → watch exit', String(watched.end - lastEnd), 'ms', '-', undefined);
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.on('close', r));
    fs.rmSync(data, { recursive: true, force: true });
    fs.rmSync(project, { recursive: true, force: true });
  }
}
