import fs from 'node:fs';
import { cycleswapProject, dockerAvailable, report, startServer } from './lib.mjs';

/** 1,000 tiny items through the local server as a fan-out with batch_size: throughput and server memory. */
export async function benchServer() {
  if (!dockerAvailable()) {
    console.log('   server: skipped (Docker or the ubuntu:24.04 image is missing; run scripts/setup.sh)');
    return;
  }
  const items = Number(process.env.BENCH_SERVER_ITEMS ?? 1000);
  const batch = Number(process.env.BENCH_SERVER_BATCH ?? 10);
  const project = cycleswapProject(
    'bench-server',
    'python3 -c \'import json,os; p=json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"])); json.dump([{"sq": i["n"]**2} for i in p["_batch"]["items"]], open(os.environ["COMPUTALOT_TASK_RESULT"],"w"))\'\n',
  );
  const server = await startServer(6);
  try {
    const cycle = async (args) => (await server.run(args, { cwd: project })).stdout;
    await cycle(['project', 'upload', '-q']);
    await cycle(['job', 'submit', '--payload', '{"n": [0, 1]}', '--fan-out-by', 'n', '--batch-size', '2', '--wait', '-q']); // builds the image first
    const payload = JSON.stringify({ n: Array.from({ length: items }, (_, i) => i) });
    const started = Date.now();
    const id = (await cycle(['job', 'submit', '--payload', payload, '--fan-out-by', 'n', '--batch-size', String(batch), '--wait', '-q'])).trim();
    const seconds = (Date.now() - started) / 1000;
    const results = JSON.parse(await cycle(['job', 'results', id, '--json']));
    if (results.items.length !== items || !results.complete) throw new Error(`incomplete results: ${results.items.length}`);
    const hwm = Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${server.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
    report(
      `server: ${items} items, batch_size ${batch} (${items / batch} tasks)`,
      (items / seconds).toFixed(0),
      'items/s',
      '-',
      undefined,
      `(${(items / batch / seconds).toFixed(1)} tasks/s, ${seconds.toFixed(1)} s, 6 workers)`,
    );
    report('  server peak RSS', hwm.toFixed(0), 'MiB', '-', undefined);
  } finally {
    await server.stop();
    fs.rmSync(project, { recursive: true, force: true });
  }
}
