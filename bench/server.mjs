import fs from 'node:fs';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { cycleswapProject, dockerAvailable, report, startServer } from './lib.mjs';

/** The tiny task: a square of one number, as JSON (the same Python line inside the server's task and the xargs loop). */
const SQUARE = 'import json; print(json.dumps({"sq": 7**2}))';
const STAGE_SPANS = [
  ['queue', 'queued', 'leased'],
  ['image', 'leased', 'image_ready'],
  ['create', 'image_ready', 'created'],
  ['start', 'created', 'started'],
  ['run', 'started', 'exited'],
  ['capture', 'exited', 'captured'],
  ['store', 'captured', 'stored'],
];

/** `seq N | xargs -P6 docker run --rm --network none IMAGE python3 -c …`: the shell loop the server must beat. */
function xargsLoop(image, tasks, workers) {
  const started = Date.now();
  execFileSync('bash', ['-c', `seq ${tasks} | xargs -P${workers} -I{} docker run --rm --network none ${image} python3 -c '${SQUARE}' > /dev/null`], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return (Date.now() - started) / 1000;
}

/**
 * 100 tiny tasks (one item each) on 6 workers against the same image run 100 times by xargs -P6,
 * alternated (xargs, server, xargs): the throughput ratio, and where the server's task time went
 * (the per-task stage timings of GET /api/v1/jobs/:id/timings, summed over the tasks).
 */
/**
 * A 100,000-task fan-out submitted while /health is asked every 10 ms: how long until it is
 * accepted (201), and the slowest /health answer meanwhile (the event loop's worst stall). The
 * job is cancelled at once (its tasks are not run).
 */
async function benchFanOut(env, tasks) {
  const headers = { authorization: `Bearer ${env.CYCLE_TOKEN}`, 'content-type': 'application/json' };
  const body = JSON.stringify({ project: 'bench-server', payload: { n: Array.from({ length: tasks }, (_, i) => i) }, fan_out: { by: 'n' } });
  let probing = true;
  let worst = 0;
  let probes = 0;
  const probe = (async () => {
    while (probing) {
      const asked = performance.now();
      await fetch(`${env.CYCLE_API_URL}/api/v1/health`).then((r) => r.arrayBuffer());
      worst = Math.max(worst, performance.now() - asked);
      probes++;
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  await new Promise((r) => setTimeout(r, 100)); // a few probes before, as a baseline
  const started = performance.now();
  const answer = await fetch(`${env.CYCLE_API_URL}/api/v1/jobs`, { method: 'POST', headers, body });
  const accepted = performance.now() - started;
  const job = await answer.json();
  probing = false;
  await probe;
  if (answer.status !== 201) throw new Error(`the ${tasks}-task fan-out was refused: ${answer.status} ${JSON.stringify(job)}`);
  await fetch(`${env.CYCLE_API_URL}/api/v1/jobs/${job.id}/cancel`, { method: 'PUT', headers });
  report(
    `server: ${tasks}-task fan-out accepted`,
    (accepted / 1000).toFixed(2),
    's',
    '≤ 1 s',
    accepted <= 1000,
    `(load average ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} cores)`,
  );
  report('  worst /health answer during it', worst.toFixed(0), 'ms', '≤ 50 ms', worst <= 50, `(${probes} probes, every 10 ms)`);
}

/** CPU seconds a process has used (user + system), from /proc. */
function cpuSeconds(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

async function benchTinyTasks(cycle, tasks, workers, pid) {
  const image = execFileSync('docker', ['images', '--filter', 'label=cycle.project-key=server:bench-server', '--format', '{{.ID}}'], { encoding: 'utf8' })
    .trim()
    .split('\n')[0];
  if (!image) throw new Error('bench: no image of the project bench-server (label cycle.project-key=server:bench-server)');
  const payload = JSON.stringify({ n: Array.from({ length: tasks }, (_, i) => i) });
  const before = xargsLoop(image, tasks, workers);
  const cpuBefore = cpuSeconds(pid);
  const started = Date.now();
  const id = (await cycle(['job', 'submit', '--payload', payload, '--fan-out-by', 'n', '--batch-size', '1', '--wait', '-q'])).trim();
  const seconds = (Date.now() - started) / 1000;
  const serverCpu = cpuSeconds(pid) - cpuBefore;
  const after = xargsLoop(image, tasks, workers);
  const loop = (before + after) / 2;
  const ratio = loop / seconds;
  report(
    `server: ${tasks} tiny tasks / xargs -P${workers} docker run`,
    ratio.toFixed(2),
    'x',
    '>= 1.3x',
    ratio >= 1.3,
    `(throughput; ${seconds.toFixed(1)} s vs ${loop.toFixed(1)} s [${before.toFixed(1)}, ${after.toFixed(1)}]; server CPU ${serverCpu.toFixed(1)} s)`,
  );
  const timings = JSON.parse(await cycle(['job', 'tasks', id, '--timings', '--json']));
  const sums = Object.fromEntries(STAGE_SPANS.map(([name]) => [name, 0]));
  for (const task of timings)
    for (const [name, from, to] of STAGE_SPANS)
      if (task.stages[from] !== undefined && task.stages[to] !== undefined) sums[name] += task.stages[to] - task.stages[from];
  const busy = Object.values(sums).reduce((a, b) => a + b, 0) - sums.queue;
  report(
    '  where the task time went (sum over tasks)',
    (busy / 1000).toFixed(1),
    's',
    '-',
    undefined,
    STAGE_SPANS.map(([name]) => `${name} ${(sums[name] / 1000).toFixed(1)}s`).join(', '),
  );
}

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
    // A batch (`_batch.items`) or one item (`n`, batch_size 1).
    'python3 -c \'import json,os; p=json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"])); json.dump([{"sq": i["n"]**2} for i in (p["_batch"]["items"] if "_batch" in p else [p])], open(os.environ["COMPUTALOT_TASK_RESULT"],"w"))\'\n',
  );
  // BENCH_SERVER_PROFILE=DIR: the server's CPU profile (node --cpu-prof), written there when it stops.
  const server = await startServer(6, {
    nodeArgs: process.env.BENCH_SERVER_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_SERVER_PROFILE}`] : [],
  });
  try {
    const cycle = async (args) => (await server.run(args, { cwd: project })).stdout;
    await cycle(['project', 'upload', '-q']);
    await cycle(['job', 'submit', '--payload', '{"n": [0, 1]}', '--fan-out-by', 'n', '--batch-size', '2', '--wait', '-q']); // builds the image first
    if (process.env.BENCH_SERVER_FANOUT !== '0') await benchFanOut(server.env, Number(process.env.BENCH_SERVER_FANOUT ?? 100_000));
    if (process.env.BENCH_SERVER_TINY !== '0') await benchTinyTasks(cycle, Number(process.env.BENCH_SERVER_TASKS ?? 100), 6, server.pid);
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
