import fs from 'node:fs';
import path from 'node:path';
import { CYCLE, cycleswapProject, dockerAvailable, report, startServer } from './lib.mjs';

/** `cycle job watch` of a job of many tasks: the client's peak memory and how fast it ends after the job. */
export async function benchWatch() {
  if (!dockerAvailable()) {
    console.log('   job watch: skipped (Docker or the ubuntu:24.04 image is missing; run scripts/setup.sh)');
    return;
  }
  const tasks = Number(process.env.BENCH_WATCH_TASKS ?? 1000);
  const project = cycleswapProject('bench-watch', 'echo "task $(cat "$COMPUTALOT_TASK_PAYLOAD")"\necho "COMPUTALOT_PROGRESS:{\\"done\\":1}"\n');
  const server = await startServer(6);
  try {
    await server.run(['project', 'upload', '-q'], { cwd: project });
    fs.writeFileSync(path.join(project, 'items.jsonl'), Array.from({ length: tasks }, (_, i) => JSON.stringify({ i })).join('\n'));
    const id = (await server.run(['job', 'submit', '--fan-out-items', '@items.jsonl'], { cwd: project })).stdout.trim();
    console.log(`   (job ${id}: ${tasks} tasks on 6 workers; watching)`);
    const watched = await server.run(['-f', 'CYCLE_MAXRSS_KB %M', CYCLE, 'job', 'watch', id, '--json'], { cwd: project, file: '/usr/bin/time' });
    const rss = Number(/CYCLE_MAXRSS_KB (\d+)/.exec(watched.stderr)[1]) / 1024;
    const taskList = JSON.parse((await server.run(['job', 'tasks', id, '--json'], { cwd: project })).stdout);
    const lastEnd = Math.max(...taskList.map((t) => Date.parse(t.finished_at)));
    report(`job watch of a ${tasks}-task job: peak RSS`, rss.toFixed(0), 'MiB', '< 150 MiB', rss < 150, `(${watched.stdout.trim().split('\n').length} events)`);
    report('  last task end → watch exit', String(watched.end - lastEnd), 'ms', '-', undefined);
  } finally {
    await server.stop();
    fs.rmSync(project, { recursive: true, force: true });
  }
}
