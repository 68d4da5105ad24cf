import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { promisify } from 'node:util';
import { Agent } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { Transport } from '../../src/api/transport.js';
import type { RunningServer } from '../../src/server/index.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { tempDir } from '../helpers/context.js';
import { startFakeDockerServer } from '../helpers/server.js';

const execFileAsync = promisify(execFile);
let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** `cycle server --tls-cert --tls-key`: the same routes over HTTPS, so a machine token never travels in clear. */
describe('cycle server over HTTPS', () => {
  it('serves the API and the machine routes over TLS; its URL says https; plain HTTP gets no answer', async () => {
    const dir = await tempDir('cycle-tls-');
    await execFileAsync('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      path.join(dir, 'key.pem'),
      '-out',
      path.join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    const cert = await fs.readFile(path.join(dir, 'cert.pem'));
    const key = await fs.readFile(path.join(dir, 'key.pem'));
    server = await startFakeDockerServer(new FakeDocker(), {
      dataDir: await tempDir('cycle-tls-data-'),
      tls: { cert, key },
      localWorker: false,
    });
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const health = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      https
        .get(`${server!.url}/health`, { ca: cert }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        })
        .on('error', reject);
    });
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ ok: true });
    // The daemon's transport over TLS (trusting this certificate), with a machine token.
    const dispatcher = new Agent({ connect: { ca: cert } });
    const user = new Transport({ baseUrl: server.url, token: server.token, version: 'test', attempts: 1, dispatcher });
    const created = await user.request<{ token: string }>('POST', '/api/v1/machines/tokens', { json: {} });
    const transport = new Transport({ baseUrl: server.url, token: created.body.token, version: 'test', attempts: 1, dispatcher });
    const { body } = await transport.request<{ name: string }>('POST', '/api/v1/machine/heartbeat', {
      json: {
        name: 'tls-m',
        slots: 1,
        inventory: { cpus: 1, memory_bytes: 1, free_disk_bytes: 1, gpus: [], docker: true, gvisor: false },
        activity: { idle: true, busy_reasons: [], paused_until: null, forbid_busy_assign: false },
      },
    });
    expect(body.name).toBe('tls-m');
    // The web page's sign-in over this server's own TLS: the session cookie is Secure.
    const link = await user.request<{ path: string }>('POST', '/api/v1/dashboard/links', { json: {} });
    const signIn = await new Promise<string | undefined>((resolve, reject) => {
      https
        .get(`${server!.url}${link.body.path}`, { ca: cert }, (res) => {
          res.resume();
          resolve(res.headers['set-cookie']?.[0]);
        })
        .on('error', reject);
    });
    expect(signIn).toMatch(/HttpOnly; SameSite=Strict; Path=\/;.*; Secure$/);
    await dispatcher.close();
    // Plain HTTP to the TLS port is no API answer.
    const plain = await fetch(server.url.replace('https:', 'http:') + '/health').then(
      (r) => r.status,
      () => 'refused',
    );
    expect(plain).not.toBe(200);
  });
});
