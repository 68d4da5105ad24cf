// The least a Node.js program can do to run a task the way `cycle project test` runs it: the same
// Engine API calls with the same lock-down (src/docker/engine-driver.ts, src/runner/task.ts,
// src/runner/limits.ts), nothing else. Create a named container (the task's environment, labels,
// its io and artifacts folders bind-mounted, stdin open), attach with stdin, wait, start, pipe
// the project's tar into `tar -x` (the source is copied, never mounted), read the output, then
// inspect it (OOMKilled) and remove it. `npm run bench -- test` times it beside `cycle project
// test` to show the floor the 1.2x budget sits on.
// Usage: node floor-run.mjs IMAGE WORKDIR SOURCE_TAR COMMAND...
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';

const [image, workdir, sourceTar, ...cmd] = process.argv.slice(2);
const socketPath = (process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock').replace(/^unix:\/\//, '');

function call(method, path, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const request = http.request({
      socketPath,
      method,
      path,
      agent: false,
      headers: { ...(data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {}), ...headers },
    });
    request.on('response', (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    request.on('upgrade', (_response, socket) => resolve({ status: 101, socket }));
    request.on('error', reject);
    request.end(data);
  });
}

// The task's folders, as runTask makes them: a private temp folder with a world-writable io/
// holding the payload, and an artifacts folder.
const privateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cycle-floor-'));
const ioDir = path.join(privateDir, 'io');
const artifactsDir = path.join(privateDir, 'artifacts');
fs.mkdirSync(ioDir, { mode: 0o777 });
fs.mkdirSync(artifactsDir, { mode: 0o777 });
fs.writeFileSync(path.join(ioDir, 'payload.json'), '{}');
const name = `cycle-floor-${process.pid}-${Date.now()}`;
try {
  const created = await call('POST', `/containers/create?name=${name}`, {
    Image: image,
    Cmd: ['bash', '-c', 'mkdir -p /app && tar -xf - -C /app && exec "$@"', 'cycle-task', ...cmd],
    WorkingDir: workdir,
    Env: [
      'INSIDE_CYCLESWAP_CONTAINER=1',
      'COMPUTALOT_TASK_PAYLOAD=/computalot/task/payload.json',
      'COMPUTALOT_TASK_RESULT=/computalot/task/result.json',
      'CYCLE_ARTIFACTS_DIR=/artifacts',
      'COMPUTALOT_ARTIFACT_DIR=/artifacts',
    ],
    Labels: { 'cycle.project': 'bench-floor', 'cycle.run': name },
    AttachStdout: true,
    AttachStderr: true,
    AttachStdin: true,
    OpenStdin: true,
    StdinOnce: true,
    // The same lock-down and limits cycle gives every job container (src/runner/limits.ts), and
    // no AutoRemove: cycle inspects the container after its exit (OOMKilled), then removes it.
    HostConfig: {
      AutoRemove: false,
      Mounts: [
        { Type: 'bind', Source: ioDir, Target: '/computalot/task', ReadOnly: false },
        { Type: 'bind', Source: artifactsDir, Target: '/artifacts', ReadOnly: false },
      ],
      NetworkMode: 'none',
      SecurityOpt: ['no-new-privileges'],
      CapDrop: ['ALL'],
      CapAdd: ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'NET_BIND_SERVICE'],
      Memory: Math.floor(os.totalmem() * 0.9),
      MemorySwap: Math.floor(os.totalmem() * 0.9),
      PidsLimit: 4096,
    },
  });
  if (created.status !== 201) throw new Error(created.body);
  const { Id: id } = JSON.parse(created.body);
  const { socket } = await call('POST', `/containers/${id}/attach?stream=1&stdout=1&stderr=1&stdin=1`, undefined, {
    Connection: 'Upgrade',
    Upgrade: 'tcp',
  });
  const streamed = new Promise((resolve) => socket.on('close', resolve).resume());
  const waited = call('POST', `/containers/${id}/wait?condition=next-exit`);
  await call('POST', `/containers/${id}/start`);
  socket.end(fs.readFileSync(sourceTar)); // the project's files, then EOF on the container's stdin
  const [result] = await Promise.all([waited, streamed]);
  await call('GET', `/containers/${id}/json`);
  await call('DELETE', `/containers/${id}?force=1&v=1`);
  process.exitCode = JSON.parse(result.body).StatusCode;
} finally {
  fs.rmSync(privateDir, { recursive: true, force: true });
}
