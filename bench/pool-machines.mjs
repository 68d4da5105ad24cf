// The simulated machines of `npm run bench pool` (bench/pool.mjs), in a worker thread of their own
// so that their work does not stall the thread that probes the server's /health. Each machine
// speaks the daemon's protocol over HTTP (docs/api.md, "Machines: the daemon's protocol"):
// a heartbeat every 5 s, the lease long poll, then renew, report and complete for each lease.
import http from 'node:http';
import { parentPort, workerData } from 'node:worker_threads';

const { url, tokens, tasks, taskMs } = workerData;
const INVENTORY = { cpus: 16, memory_bytes: 64e9, free_disk_bytes: 500e9, gpus: [], docker: true, gvisor: true, version: 'bench' };
const ACTIVITY = { idle: true, busy_reasons: [], paused_until: null, forbid_busy_assign: true };

const leaseAnswers = []; // ms, answers that carried a lease
const leaseTimes = []; // when each was asked, ms from the start
let emptyAnswers = 0;
let done = 0;
let requests = 0;
let failures = 0;
let stopping = false;

let retries = 0;

/** One call; a connection the server closed under it (an idle keep-alive socket it reclaimed) is tried once more, as the daemon does. */
async function call(token, route, body) {
  try {
    return await callOnce(token, route, body);
  } catch (error) {
    if (error.code !== 'ECONNRESET' && error.code !== 'EPIPE') throw error;
    retries++;
    return callOnce(token, route, body);
  }
}

// node:http with kept-alive connections rather than fetch: the simulator shares this machine's two
// cores with the server it measures (200 real machines would not), and fetch costs about twice the
// CPU per request. The requests are the same: method, route, headers, body.
const agent = new http.Agent({ keepAlive: true });
const target = new URL(url);

function callOnce(token, route, body) {
  requests++;
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: 'POST',
        path: `/api/v1/machine/${route}`,
        agent,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': data.length },
      },
      (answer) => {
        const chunks = [];
        answer.on('data', (chunk) => chunks.push(chunk));
        answer.on('error', reject);
        answer.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (answer.statusCode < 200 || answer.statusCode > 299) {
            failures++;
            reject(new Error(`${route}: ${answer.statusCode} ${text.slice(0, 300)}`));
          } else resolve(JSON.parse(text));
        });
      },
    );
    request.on('error', reject);
    request.end(data);
  });
}

const started = performance.now();

async function machine(token, i) {
  const name = `sim-${String(i).padStart(3, '0')}`;
  const heartbeat = () => call(token, 'heartbeat', { name, slots: 1, inventory: INVENTORY, activity: ACTIVITY });
  await heartbeat();
  const beat = setInterval(() => heartbeat().catch(() => undefined), 5_000);
  try {
    while (!stopping) {
      const asked = performance.now();
      const { leases } = await call(token, 'lease', { max: 1, wait_ms: 1_000 });
      if (!leases.length) {
        emptyAnswers++;
        continue;
      }
      leaseAnswers.push(performance.now() - asked);
      leaseTimes.push(asked - started);
      for (const lease of leases) {
        // The task "runs" taskMs (a tiny task's container takes about that); renewed and reported on midway.
        await new Promise((r) => setTimeout(r, taskMs / 2));
        await call(token, `leases/${lease.id}/renew`, {});
        await call(token, `leases/${lease.id}/report`, { output: `task ${lease.index} on ${name}\n`, progress: { step: 1 } });
        await new Promise((r) => setTimeout(r, taskMs / 2));
        await call(token, `leases/${lease.id}/complete`, { status: 'succeeded', result: { machine: name }, exit_code: 0 });
        if (++done >= tasks) stopping = true;
      }
    }
  } finally {
    clearInterval(beat);
  }
}

const results = await Promise.allSettled(tokens.map((token, i) => machine(token, i)));
const errors = results.filter((r) => r.status === 'rejected').map((r) => `${r.reason?.message ?? r.reason} (${r.reason?.code ?? r.reason?.cause?.code ?? ''})`);
parentPort.postMessage({
  leaseAnswers,
  leaseTimes,
  emptyAnswers,
  done,
  requests,
  failures,
  retries,
  errors: errors.slice(0, 3),
  seconds: (performance.now() - started) / 1000,
});
