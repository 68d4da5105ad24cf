import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { DomainError, type ProblemKind } from '../../src/server/errors.js';
import { Router, STATUS_OF_PROBLEM } from '../../src/server/http/router.js';

/**
 * docs/design.md, "Typed errors": the server's services speak the domain (errors.ts's
 * DomainError, values and streams); only the HTTP layer knows statuses, HttpError and the request
 * object. `index.ts` wires the two together (it starts the HTTP server), so it may import http/.
 */
const SERVER = path.resolve(import.meta.dirname, '../../src/server');
const HTTP_LAYER = new Set([
  'http/router.ts',
  'http/paging.ts',
  'http/sse.ts',
  'http/routes.ts',
  'http/machine-routes.ts',
  'http/daemon-routes.ts',
  'http/web-routes.ts',
]);
const WIRING = new Set(['index.ts']);

function serviceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return serviceFiles(full);
    const name = path.relative(SERVER, full);
    return name.endsWith('.ts') && !HTTP_LAYER.has(name) ? [name] : [];
  });
}

describe("the server's house: services speak the domain, HTTP speaks HTTP", () => {
  const services = serviceFiles(SERVER);

  it('finds the services', () => {
    expect(services).toEqual(
      expect.arrayContaining([
        'projects.ts',
        'volumes.ts',
        'uploads.ts',
        'recipes.ts',
        'account.ts',
        'events.ts',
        'jobs.ts',
        'planner.ts',
        'kinds/shared.ts',
        'queue/work-queue.ts',
      ]),
    );
  });

  it('no service throws HttpError or takes an IncomingMessage', () => {
    const offenders = services.flatMap((name) => {
      const text = fs.readFileSync(path.join(SERVER, name), 'utf8');
      return ['HttpError', 'IncomingMessage', 'ServerResponse', 'RouteContext'].filter((word) => text.includes(word)).map((word) => `${name}: ${word}`);
    });
    expect(offenders).toEqual([]);
  });

  it('no service imports the HTTP layer', () => {
    const offenders = services
      .filter((name) => !WIRING.has(name))
      .filter((name) => /from '(\.\.?\/)+http\/[a-z-]+\.js'/.test(fs.readFileSync(path.join(SERVER, name), 'utf8')));
    expect(offenders).toEqual([]);
  });
});

describe('the one table from a domain error to an HTTP answer', () => {
  it('answers each kind with its status, and the code, message, field and extra as thrown', async () => {
    const router = new Router({ token: 'secret-token', log: () => {}, hostPaths: ['/data/dir'] });
    router.add('GET', '/problem/:kind', (ctx) => {
      const kind = ctx.params.kind as ProblemKind;
      throw new DomainError(
        kind,
        `code_${kind}`,
        `refused (${kind}) under /data/dir/x`,
        'some.field',
        kind === 'payment-required' ? { quote: { usd: 1 } } : undefined,
      );
    });
    const server = http.createServer((req, res) => void router.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const kinds = Object.keys(STATUS_OF_PROBLEM) as ProblemKind[];
      expect(kinds).toHaveLength(12);
      for (const kind of kinds) {
        const answer = await fetch(`http://127.0.0.1:${port}/problem/${kind}`, { headers: { authorization: 'Bearer secret-token' } });
        expect([kind, answer.status]).toEqual([kind, STATUS_OF_PROBLEM[kind]]);
        const body = (await answer.json()) as Record<string, unknown>;
        expect(body).toEqual({
          error: { code: `code_${kind}`, message: `refused (${kind}) under <data-dir>/x`, field: 'some.field' },
          ...(kind === 'payment-required' ? { quote: { usd: 1 } } : {}),
        });
        if (kind === 'unavailable') expect(answer.headers.get('retry-after')).toBe('1');
      }
      // A failure the server shows (extract_failed) is a 500 with its own words, not the opaque 'internal'.
      expect(STATUS_OF_PROBLEM.failed).toBe(500);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
