// The least a Node.js program can do to run a container: the Engine API calls of a `docker run
// --rm` (create, attach, wait, start) on the daemon's socket, nothing else. `npm run bench --
// test` times it beside `cycle project test` and the plain `docker run` to show the floor the
// 1.2x budget sits on. Usage: node floor-run.mjs IMAGE WORKDIR COMMAND...
import os from 'node:os';
import http from 'node:http';

const [image, workdir, ...cmd] = process.argv.slice(2);
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

const created = await call('POST', '/containers/create', {
  Image: image,
  Cmd: cmd,
  WorkingDir: workdir,
  AttachStdout: true,
  AttachStderr: true,
  // The same lock-down and limits cycle gives every job container (src/runner/limits.ts): a
  // fresh network namespace alone costs ~300 ms a container on some daemons.
  HostConfig: {
    AutoRemove: true,
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
const { socket } = await call('POST', `/containers/${id}/attach?stream=1&stdout=1&stderr=1`, undefined, { Connection: 'Upgrade', Upgrade: 'tcp' });
const streamed = new Promise((resolve) => socket.on('close', resolve).resume());
const waited = call('POST', `/containers/${id}/wait?condition=next-exit`);
await call('POST', `/containers/${id}/start`);
const [result] = await Promise.all([waited, streamed]);
process.exitCode = JSON.parse(result.body).StatusCode;
