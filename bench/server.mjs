import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { CYCLE, dockerAvailable, report, tempDir } from './lib.mjs';

/** 1,000 tiny items through the local server as a fan-out with batch_size: throughput and server memory. */
export async function benchServer() {
  if (!dockerAvailable()) {
    console.log('   server: skipped (Docker or the ubuntu:24.04 image is missing; run scripts/setup.sh)');
    return;
  }
  const items = Number(process.env.BENCH_SERVER_ITEMS ?? 1000);
  const batch = Number(process.env.BENCH_SERVER_BATCH ?? 10);
  const data = tempDir('cycle-bench-server-');
  const project = tempDir('cycle-bench-server-project-');
  fs.mkdirSync(path.join(project, '.cycleswap'));
  fs.writeFileSync(path.join(project, '.cycleswap/manifest.toml'), '[main]\nname = "bench-server"\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n');
  fs.writeFileSync(path.join(project, '.cycleswap/run.sh'), 'python3 -c \'import json,os; p=json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"])); json.dump([{"sq": i["n"]**2} for i in p["_batch"]["items"]], open(os.environ["COMPUTALOT_TASK_RESULT"],"w"))\'\n');
  fs.writeFileSync(path.join(project, '.cycleswap/build.sh'), 'true\n');
  const server = spawn(CYCLE, ['server', '--port', '0', '--data-dir', data, '--workers', '6'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  server.stderr.on('data', (c) => (log += c));
  for (let i = 0; i < 100 && !/listening on/.test(log); i++) await new Promise((r) => setTimeout(r, 100));
  const url = /listening on (http:\/\/\S+)/.exec(log)?.[1];
  const token = fs.readFileSync(path.join(data, 'token'), 'utf8').trim();
  const env = { ...process.env, CYCLE_API_URL: url, CYCLE_TOKEN: token, XDG_CONFIG_HOME: data, NO_COLOR: '1' };
  const cycle = (args) =>
    new Promise((resolve, reject) => {
      const child = spawn(CYCLE, [...args], { cwd: project, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c) => (stdout += c));
      child.stderr.on('data', (c) => (stderr += c));
      child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`${args.join(' ')}: ${code}\n${stderr}`))));
    });
  try {
    await cycle(['project', 'upload', '-q']);
    await cycle(['job', 'submit', '--payload', '{"n": [0, 1]}', '--fan-out-by', 'n', '--batch-size', '2', '--wait', '-q']); // builds the image first
    const payload = JSON.stringify({ n: Array.from({ length: items }, (_, i) => i) });
    const started = Date.now();
    const id = (await cycle(['job', 'submit', '--payload', payload, '--fan-out-by', 'n', '--batch-size', String(batch), '--wait', '-q'])).trim();
    const seconds = (Date.now() - started) / 1000;
    const results = JSON.parse(await cycle(['job', 'results', id, '--json']));
    if (results.items.length !== items || !results.complete) throw new Error(`incomplete results: ${results.items.length}`);
    const status = fs.readFileSync(`/proc/${server.pid}/status`, 'utf8');
    const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
    report(`server: ${items} items, batch_size ${batch} (${items / batch} tasks)`, (items / seconds).toFixed(0), 'items/s', '-', undefined, `(${(items / batch / seconds).toFixed(1)} tasks/s, ${seconds.toFixed(1)} s, 6 workers)`);
    report('  server peak RSS', hwm.toFixed(0), 'MiB', '-', undefined);
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.on('close', r));
    fs.rmSync(data, { recursive: true, force: true });
    fs.rmSync(project, { recursive: true, force: true });
  }
}
