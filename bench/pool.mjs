// Issue 20's machine pool (`cycle server --no-local-worker` + `cycle daemon run`), three figures:
//  a. submit → container started on an idle daemon, against a bare `docker create` + `docker start`
//     of the same image on the same machine (goal ≤ 1.3x), warm, medians;
//  b. 3 daemons × 2 slots on 60 tasks of `sleep 2`: the ideal is 20 s (goal ≤ 1.15x);
//  c. 200 simulated machines (no Docker) leasing, renewing, reporting and completing tiny tasks
//     over HTTP: lease answers ≤ 100 ms at p99, the server's event-loop stalls ≤ 50 ms.
// The daemons run on this machine with a fixture GPU inventory and an idle load file (the test
// seam of src/daemon/probe-fixture.ts): the real probe finds a loaded bench machine busy.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { CYCLE, ROOT, cycleswapProject, dockerAvailable, median, report, startServer, tempDir, time } from './lib.mjs';

const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'nvidia', 'smi-fail-command-not-found.txt');
const PROJECT = 'bench-pool';

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN;
}

async function api(env, method, route, body) {
  const answer = await fetch(`${env.CYCLE_API_URL}${route}`, {
    method,
    headers: { authorization: `Bearer ${env.CYCLE_TOKEN}`, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const parsed = await answer.json();
  if (!answer.ok) throw new Error(`${method} ${route}: ${answer.status} ${JSON.stringify(parsed)}`);
  return parsed;
}

async function machineToken(env, name) {
  return (await api(env, 'POST', '/api/v1/machines/tokens', name ? { name } : {})).token;
}

async function finished(env, id, withinMs) {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const job = await api(env, 'GET', `/api/v1/jobs/${id}`);
    if (['completed', 'failed', 'partial', 'cancelled'].includes(job.status)) {
      if (job.status !== 'completed') throw new Error(`job ${id} ended ${job.status}`);
      return Date.now();
    }
    if (Date.now() > deadline) throw new Error(`job ${id} did not finish in ${withinMs / 1000} s (${job.status})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `cycle daemon run` on this machine, a fixture inventory, idle; resolves once it takes work. */
async function startDaemon(env, name, slots) {
  const data = tempDir(`cycle-bench-daemon-${name}-`);
  const load = path.join(data, 'load.json');
  fs.writeFileSync(load, '{}');
  const token = await machineToken(env, name);
  const child = spawn(
    process.execPath,
    [CYCLE, 'daemon', 'run', '--api-url', env.CYCLE_API_URL, '--name', name, '--slots', String(slots), '--data-dir', data],
    {
      env: { ...process.env, NO_COLOR: '1', CYCLE_MACHINE_TOKEN: token, CYCLE_DAEMON_PROBE_FIXTURE: FIXTURE, CYCLE_DAEMON_PROBE_LOAD: load },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let log = '';
  child.stderr.on('data', (c) => (log += c));
  for (let i = 0; i < 600 && !/is taking work/.test(log); i++) await new Promise((r) => setTimeout(r, 100));
  if (!/is taking work/.test(log)) throw new Error(`daemon ${name} did not start: ${log}`);
  return {
    name,
    log: () => log,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r() : child.on('close', r)));
      fs.rmSync(data, { recursive: true, force: true });
    },
  };
}

/** The image the daemons built for the bench project (the newest with its project label). */
function projectImage() {
  const ids = execFileSync('docker', ['images', '-q', '--filter', 'label=cycle.project-key'], { encoding: 'utf8' }).trim().split('\n').filter(Boolean);
  const lines = ids.length
    ? execFileSync('docker', ['image', 'inspect', '--format', '{{.Id}} {{index .Config.Labels "cycle.project-key"}}', ...new Set(ids)], { encoding: 'utf8' })
        .trim()
        .split('\n')
        .filter((l) => l.endsWith(`:${PROJECT}`))
    : [];
  if (!lines.length) throw new Error(`bench: no image labelled cycle.project-key=…:${PROJECT}`);
  return lines[0].split(' ')[0];
}

/** The floor of (a): `docker create --network none IMAGE true` then `docker start` (ms, to started), and `docker run --rm` whole. */
function dockerFloor(image) {
  const name = `cycle-bench-floor-${process.pid}`;
  const created = performance.now();
  execFileSync('docker', ['create', '--name', name, '--network', 'none', image, 'true'], { stdio: 'ignore' });
  execFileSync('docker', ['start', name], { stdio: 'ignore' });
  const started = performance.now() - created;
  execFileSync('docker', ['rm', '-f', name], { stdio: 'ignore' });
  return started;
}

async function benchSubmitToStarted(server, runs) {
  const daemon = await startDaemon(server.env, 'pool-a', 1);
  try {
    // Warm: the revision fetched and the image built on the daemon.
    await finished(server.env, (await api(server.env, 'POST', '/api/v1/jobs', { project: PROJECT, payload: {} })).id, 300_000);
    const image = projectImage();
    const floors = [];
    const spans = [];
    const runs_ = [];
    for (let i = 0; i < runs + 1; i++) {
      floors.push(dockerFloor(image));
      const submitted = Date.now();
      const { id } = await api(server.env, 'POST', '/api/v1/jobs', { project: PROJECT, payload: {} });
      await finished(server.env, id, 120_000);
      const [task] = (await api(server.env, 'GET', `/api/v1/jobs/${id}/timings`)).tasks;
      if (task?.stages.started === undefined) throw new Error(`job ${id}: no started stage in its timings`);
      if (i === 0) continue; // one more warm-up round
      spans.push(task.stages.started - submitted);
      runs_.push({ ...task.stages, submitted });
    }
    const wholeRun = median(Array.from({ length: 3 }, () => time('docker', ['run', '--rm', '--network', 'none', image, 'true'])));
    const floor = median(floors.slice(1));
    const span = median(spans);
    const stage = (from, to) => median(runs_.map((s) => s[to] - s[from])).toFixed(0);
    report(
      'pool: submit → container started, idle daemon',
      (span / floor).toFixed(2),
      'x',
      '≤ 1.3x',
      span / floor <= 1.3,
      `(${span.toFixed(0)} ms vs docker create+start ${floor.toFixed(0)} ms, medians of ${runs}; docker run --rm whole ${wholeRun.toFixed(0)} ms)`,
    );
    report(
      '  where it went (medians)',
      '-',
      '',
      '-',
      undefined,
      `submit→leased ${stage('submitted', 'leased')} ms, image ${stage('leased', 'image_ready')} ms, create ${stage('image_ready', 'created')} ms, start ${stage('created', 'started')} ms`,
    );
    return daemon;
  } catch (error) {
    await daemon.stop();
    throw error;
  }
}

async function benchSleepFanOut(server, first) {
  const daemons = [first];
  try {
    // pool-a took --slots 1 for (a); the fan-out wants three machines of two slots each.
    await first.stop();
    daemons.length = 0;
    for (const name of ['pool-a2', 'pool-b', 'pool-c']) daemons.push(await startDaemon(server.env, name, 2));
    // Warm: each daemon builds (or finds) the image and fetches the revision.
    const warm = await api(server.env, 'POST', '/api/v1/jobs', { project: PROJECT, payload: { n: [1, 2, 3, 4, 5, 6] }, fan_out: { by: 'n' } });
    await finished(server.env, warm.id, 300_000);
    const tasks = 60;
    const submitted = Date.now();
    const { id } = await api(server.env, 'POST', '/api/v1/jobs', {
      project: PROJECT,
      payload: { n: Array.from({ length: tasks }, (_, i) => i), sleep: 2 },
      fan_out: { by: 'n' },
    });
    const seconds = ((await finished(server.env, id, 600_000)) - submitted) / 1000;
    const ideal = (tasks / 6) * 2;
    const timings = (await api(server.env, 'GET', `/api/v1/jobs/${id}/timings?limit=1000`)).tasks;
    const span = (from, to) => median(timings.filter((t) => t.stages[from] && t.stages[to]).map((t) => t.stages[to] - t.stages[from])).toFixed(0);
    report(
      'pool: 3 daemons × 2 slots, 60 × sleep 2',
      (seconds / ideal).toFixed(2),
      'x',
      '≤ 1.15x',
      seconds / ideal <= 1.15,
      `(${seconds.toFixed(1)} s vs the ideal ${ideal} s; per task medians: queue→leased ${span('queued', 'leased')} ms, leased→started ${span('leased', 'started')} ms, run ${span('started', 'exited')} ms, exited→stored ${span('exited', 'stored')} ms)`,
    );
  } finally {
    for (const daemon of daemons) await daemon.stop();
  }
}

/** CPU seconds a process has used (user + system), from /proc (USER_HZ 100); with `thread`, that thread's only. */
function cpuSeconds(pid, thread) {
  const fields = fs
    .readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, 'utf8')
    .split(') ')[1]
    .split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** (c): 200 simulated machines in a worker thread; this thread asks /health every 10 ms. */
async function benchSimulatedMachines() {
  const machines = Number(process.env.BENCH_POOL_MACHINES ?? 200);
  const tasks = Number(process.env.BENCH_POOL_TASKS ?? 4000);
  // How long each simulated task runs: about a tiny task's container (figure a's docker start and run).
  const taskMs = Number(process.env.BENCH_POOL_TASK_MS ?? 1000);
  const server = await startServer(1, {
    args: ['--no-local-worker'],
    // BENCH_POOL_PROFILE=DIR: the server's CPU profile, written there when it stops.
    nodeArgs: process.env.BENCH_POOL_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_POOL_PROFILE}`] : [],
  });
  const project = cycleswapProject(PROJECT, 'true\n');
  try {
    await server.run(['project', 'upload', '-q'], { cwd: project });
    const tokens = [];
    for (let i = 0; i < machines; i++) tokens.push(await machineToken(server.env));
    await api(server.env, 'POST', '/api/v1/jobs', { project: PROJECT, payload: { n: Array.from({ length: tasks }, (_, i) => i) }, fan_out: { by: 'n' } });
    const health = [];
    let probeFailures = 0;
    let probing = true;
    const probe = (async () => {
      while (probing) {
        const asked = performance.now();
        const ok = await fetch(`${server.env.CYCLE_API_URL}/api/v1/health`).then(
          (r) => r.arrayBuffer().then(() => r.ok),
          () => false,
        );
        if (ok) health.push(performance.now() - asked);
        else probeFailures++;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const cpuBefore = cpuSeconds(server.pid);
    // The event loop's thread apart (its id is the process's): what other threads do (the file system's, a checkpoint's) never holds a request.
    const loopCpuBefore = cpuSeconds(server.pid, server.pid);
    const simCpuBefore = process.cpuUsage();
    const worker = new Worker(new URL('./pool-machines.mjs', import.meta.url), { workerData: { url: server.env.CYCLE_API_URL, tokens, tasks, taskMs } });
    const outcome = await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const serverCpu = cpuSeconds(server.pid) - cpuBefore;
    const loopCpu = cpuSeconds(server.pid, server.pid) - loopCpuBefore;
    // This process's CPU meanwhile: the simulated machines' thread, and the /health probe.
    const simCpu = process.cpuUsage(simCpuBefore);
    probing = false;
    await probe;
    await worker.terminate();
    if (outcome.errors.length || outcome.done < tasks)
      throw new Error(`the simulated machines stopped: ${outcome.done}/${tasks} done; ${outcome.errors.join('; ')}`);
    const p99 = percentile(outcome.leaseAnswers, 99);
    const worst = Math.max(...health);
    report(
      `pool: ${machines} simulated machines, lease answer p99`,
      p99.toFixed(0),
      'ms',
      '≤ 100 ms',
      p99 <= 100,
      `(median ${median(outcome.leaseAnswers).toFixed(0)} ms over ${outcome.leaseAnswers.length} leases; ${tasks} tasks of ${taskMs} ms in ${outcome.seconds.toFixed(1)} s, ${(outcome.requests / outcome.seconds).toFixed(0)} requests/s, server CPU ${serverCpu.toFixed(1)} s (its event loop's thread ${loopCpu.toFixed(1)} s), the simulator's ${((simCpu.user + simCpu.system) / 1e6).toFixed(1)} s, ${outcome.retries} calls retried on a reclaimed connection; load average ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} cores)`,
    );
    // The first round (every machine asks at once for the new job) apart from the steady state after it.
    const burst = outcome.leaseAnswers.filter((_, i) => outcome.leaseTimes[i] < 2000);
    const steady = outcome.leaseAnswers.filter((_, i) => outcome.leaseTimes[i] >= 2000);
    report(
      '  lease p99: first 2 s / after',
      `${percentile(burst, 99).toFixed(0)} / ${percentile(steady, 99).toFixed(0)}`,
      'ms',
      '-',
      undefined,
      `(${burst.length} / ${steady.length} leases)`,
    );
    report(
      '  server event-loop stall (/health every 10 ms)',
      worst.toFixed(0),
      'ms',
      '≤ 50 ms',
      worst <= 50,
      `(worst; p99 ${percentile(health, 99).toFixed(0)} ms, median ${median(health).toFixed(1)} ms, ${health.length} probes, ${probeFailures} refused or cut)`,
    );
  } finally {
    await server.stop();
    fs.rmSync(project, { recursive: true, force: true });
  }
}

export async function benchPool() {
  if (process.env.BENCH_POOL_SIM !== '0') await benchSimulatedMachines();
  if (process.env.BENCH_POOL_DAEMONS === '0') return;
  if (!dockerAvailable()) {
    console.log('   pool: daemons skipped (Docker or the ubuntu:24.04 image is missing; run scripts/setup.sh)');
    return;
  }
  const server = await startServer(1, { args: ['--no-local-worker'] });
  const project = cycleswapProject(PROJECT, 'if grep -q \'"sleep"\' "$COMPUTALOT_TASK_PAYLOAD"; then sleep 2; fi\n');
  try {
    await server.run(['project', 'upload', '-q'], { cwd: project });
    const daemon = await benchSubmitToStarted(server, Number(process.env.BENCH_POOL_RUNS ?? 5));
    if (process.env.BENCH_POOL_FANOUT !== '0') await benchSleepFanOut(server, daemon);
    else await daemon.stop();
  } finally {
    await server.stop();
    fs.rmSync(project, { recursive: true, force: true });
  }
}
