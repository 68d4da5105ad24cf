import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, type DB } from '../../src/server/db.js';
import type { RunningServer } from '../../src/server/index.js';
import { MachineRegistry } from '../../src/server/machines/registry.js';
import { tempDir } from '../helpers/context.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { cpuInventory, IDLE } from '../helpers/machines.js';
import { startFakeDockerServer } from '../helpers/server.js';

// Issue 20, "Safety": a machine token is not a user token (it cannot submit, read jobs, make
// tokens or remove machines), and the user's token is not a machine.
let server: RunningServer;
let db: DB;
let registry: MachineRegistry;
let machineToken: string;

beforeAll(async () => {
  const dataDir = await tempDir('cycle-sec-machines-');
  server = await startFakeDockerServer(new FakeDocker(), { dataDir });
  db = openDatabase(path.join(dataDir, 'cycle.db'));
  registry = new MachineRegistry({ db, leaseMs: 30_000 });
  const answer = await fetch(`${server.url}/api/v1/machines/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'victim' }),
  });
  machineToken = ((await answer.json()) as { token: string }).token;
  registry.heartbeat(registry.authenticate(machineToken)!.tokenId, 'victim', cpuInventory(), IDLE, 1);
});
afterAll(async () => {
  db?.close();
  await server?.close();
});

const USER_ROUTES: Array<[string, string, unknown?]> = [
  ['GET', '/api/v1/jobs'],
  ['POST', '/api/v1/jobs', { project: 'p' }],
  ['POST', '/api/v1/jobs/batch', { jobs: [] }],
  ['GET', '/api/v1/projects'],
  ['POST', '/api/v1/projects', { name: 'p' }],
  ['PUT', '/api/v1/projects/p/kv/k', { value: 1 }],
  ['GET', '/api/v1/artifacts'],
  ['GET', '/api/v1/account/balance'],
  ['GET', '/api/v1/volumes'],
  ['GET', '/api/v1/machines'],
  ['GET', '/api/v1/machines/victim'],
  ['POST', '/api/v1/machines/tokens', { name: 'mine' }],
  ['POST', '/api/v1/machines/victim/drain', {}],
  ['DELETE', '/api/v1/machines/victim'],
];

describe('machine tokens and user tokens never stand in for each other', () => {
  it.each(USER_ROUTES)('a machine token on %s %s: 403 machine_token, nothing done', async (method, route, body) => {
    const answer = await fetch(`${server.url}${route}`, {
      method,
      headers: { authorization: `Bearer ${machineToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    expect(answer.status).toBe(403);
    expect(((await answer.json()) as { error: { code: string } }).error.code).toBe('machine_token');
    expect(registry.show('victim')).toMatchObject({ name: 'victim', draining: false });
    expect(registry.list()).toHaveLength(1);
  });

  it('the user token, a tampered or a guessed machine token are not machines', () => {
    expect(registry.authenticate(server.token)).toBeUndefined();
    expect(registry.authenticate(`${machineToken.slice(0, -1)}${machineToken.endsWith('A') ? 'B' : 'A'}`)).toBeUndefined();
    expect(registry.authenticate(`cym_${'A'.repeat(43)}`)).toBeUndefined();
    expect(registry.authenticate(machineToken)).toMatchObject({ name: 'victim' });
  });
});
