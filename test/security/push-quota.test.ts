import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settlesWithin } from '../helpers/sandbox.js';
import { startServerProcess, type ServerProcess } from '../helpers/server.js';
import { paxHeader, rawTarGz, VALID_PROJECT, type RawEntry } from '../helpers/tarballs.js';

/*
 * Issue 18, Medium 3 and High 2, through a real `cycle server`: a gzip bomb is refused by its
 * compression ratio (413), pushes past the per-project or whole-server disk quota are refused
 * (507), each naming the limit and the flag that raises it, and a hostile tree is refused
 * while the server keeps answering.
 */

type Answer = { status: number; body: { error?: { code: string; message: string }; revision?: number } };

let server: ServerProcess;
/** A server of its own for each group: the quotas of one would decide another's pushes. */
function serverFor(args: string[]): void {
  beforeAll(async () => {
    server = await startServerProcess({ workers: 1, args });
  });
  afterAll(async () => {
    await server.stop('SIGKILL');
    await fs.rm(server.dataDir, { recursive: true, force: true });
  });
}

async function push(name: string, body: Buffer): Promise<Answer> {
  const response = await settlesWithin(
    60_000,
    'the push',
    fetch(`${server.url}/api/v1/projects/${name}/push`, { method: 'POST', headers: { authorization: `Bearer ${server.token}` }, body }),
  );
  return { status: response.status, body: (await response.json()) as Answer['body'] };
}

/** A valid project with 300 KiB that does not compress: about 600 KiB of disk once stored. */
const project = (): Buffer => rawTarGz([...VALID_PROJECT, { name: 'data.bin', body: randomBytes(300 << 10) }]);

describe('disk quotas of stored pushes', () => {
  serverFor(['--project-quota', '1m', '--server-quota', '1.5m']);
  it('a push past the per-project quota is a 507 naming the quota and --project-quota; one past the server quota names --server-quota', async () => {
    expect((await push('alpha', project())).status).toBe(201);
    const overProject = await push('alpha', project());
    expect(overProject.status).toBe(507);
    expect(overProject.body.error?.code).toBe('project_quota_exceeded');
    expect(overProject.body.error?.message).toMatch(/project "alpha"'s quota of 1048576 bytes.*cycle server-gc.*--project-quota/);

    // The server's quota (1.5 MiB) binds once another project's push is stored.
    expect((await push('beta', project())).status).toBe(201);
    const overServer = await push('gamma', project());
    expect(overServer.status).toBe(507);
    expect(overServer.body.error?.code).toBe('server_quota_exceeded');
    expect(overServer.body.error?.message).toMatch(/the server's quota of 1572864 bytes.*--server-quota/);

    // Nothing of the refused pushes is kept.
    expect(await fs.readdir(path.join(server.dataDir, 'tmp'))).toEqual([]);
    const status = await fetch(`${server.url}/api/v1/projects/alpha/status`, { headers: { authorization: `Bearer ${server.token}` } });
    expect(((await status.json()) as { revision: number }).revision).toBe(1);
  }, 120_000);
});

describe('pushes side by side', () => {
  serverFor(['--project-quota', '1m']);
  it('two pushes that each fit the quota but not together: one is stored, the other a 507 (checked again before the commit)', async () => {
    // Each round pushes two different contents to a fresh project at once: both pass the check
    // made before extraction; only the check made before the commit sees the other.
    for (let round = 0; round < 4; round++) {
      const answers = await Promise.all([push(`pair${round}`, project()), push(`pair${round}`, project())]);
      expect(answers.map((a) => a.status).sort()).toEqual([201, 507]);
      expect(answers.find((a) => a.status === 507)?.body.error?.code).toBe('project_quota_exceeded');
    }
    expect(await fs.readdir(path.join(server.dataDir, 'tmp'))).toEqual([]);
  }, 120_000);
});

describe('a gzip bomb', () => {
  serverFor([]);
  it('a small push that expands past the ratio is a 413 naming the ratio and --max-compression-ratio', async () => {
    const bomb = rawTarGz([...VALID_PROJECT, { name: 'zeros.bin', body: Buffer.alloc(80 << 20) }]);
    expect(bomb.length).toBeLessThan(1 << 20);
    const answer = await push('bomb', bomb);
    expect(answer.status).toBe(413);
    expect(answer.body.error?.code).toBe('compression_ratio');
    expect(answer.body.error?.message).toMatch(/expands more than 200 times.*--max-compression-ratio/);
    expect(await fs.readdir(path.join(server.dataDir, 'tmp'))).toEqual([]);
  }, 60_000);
});

describe('a hostile tree', () => {
  serverFor([]);
  it("the issue's deep push is refused by depth while /health keeps answering", async () => {
    const entries: RawEntry[] = [...VALID_PROJECT];
    let prefix = '';
    for (let level = 0; level < 1_900; level++) {
      prefix += 'd/';
      entries.push(...(prefix.length > 99 ? [paxHeader({ path: prefix }), { name: 'x', type: '5' as const }] : [{ name: prefix, type: '5' as const }]));
    }
    for (let i = 0; i < 500; i++) entries.push(paxHeader({ path: `${prefix}l${i}` }), { name: 'x', type: '2', linkname: '.' });
    const body = rawTarGz(entries); // before the probe starts: gzipping holds this process
    let slowest = 0;
    let pushing = true;
    const probe = (async () => {
      while (pushing) {
        const started = performance.now();
        await settlesWithin(
          20_000,
          '/health',
          fetch(`${server.url}/health`).then((r) => r.text()),
        );
        slowest = Math.max(slowest, performance.now() - started);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const answer = await push('deep', body).finally(() => (pushing = false));
    await probe;
    expect(answer.status).toBe(400);
    expect(answer.body.error?.message).toMatch(/folders deep; this server takes at most 128 \(CYCLE_SERVER_MAX_DEPTH\)/);
    expect(slowest).toBeLessThan(1_000);
  }, 60_000);
});
