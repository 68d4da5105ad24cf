import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

/** An error answered as `{error: {code, message, field?}}` with an HTTP status. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
}

export type Handler = (ctx: RouteContext) => Promise<void> | void;

interface Route {
  method: string;
  pattern: RegExp;
  keys: string[];
  handler: Handler;
  public: boolean;
}

/** A small router: `/api/v1/jobs/:id` patterns, bearer-token auth on every non-public route. */
export class Router {
  private readonly routes: Route[] = [];

  constructor(private readonly token: string) {}

  add(method: string, path: string, handler: Handler, options: { public?: boolean } = {}): void {
    const keys: string[] = [];
    const pattern = new RegExp(
      '^' +
        path.replace(/\/:([a-z_]+)/g, (_match, key: string) => {
          keys.push(key);
          return '/([^/]+)';
        }) +
        '/?$',
    );
    this.routes.push({ method, pattern, keys, handler, public: options.public === true });
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const matching = this.routes.filter((r) => r.pattern.test(url.pathname));
      if (matching.length === 0) throw new HttpError(404, 'not_found', `no route ${url.pathname}`);
      const route = matching.find((r) => r.method === req.method);
      if (!route) throw new HttpError(405, 'method_not_allowed', `${req.method} is not allowed on ${url.pathname}; use ${[...new Set(matching.map((r) => r.method))].join(' or ')}`);
      if (!route.public) this.authorize(req);
      const match = route.pattern.exec(url.pathname)!;
      const params: Record<string, string> = {};
      route.keys.forEach((key, i) => {
        params[key] = decodeURIComponent(match[i + 1]!);
      });
      await route.handler({ req, res, params, query: url.searchParams });
    } catch (error) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // Answered before the body was read (413, 401 on an upload): the connection cannot be reused.
      if (!req.complete) res.setHeader('Connection', 'close');
      if (error instanceof HttpError) sendError(res, error);
      else {
        sendError(res, new HttpError(500, 'internal', `internal error: ${(error as Error).message}`));
      }
    }
  }

  private authorize(req: IncomingMessage): void {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match) throw new HttpError(401, 'unauthorized', 'missing bearer token: send "Authorization: Bearer <token>"');
    const given = Buffer.from(match[1]!.trim());
    const expected = Buffer.from(this.token);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new HttpError(401, 'unauthorized', 'invalid token');
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store', ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, error: HttpError): void {
  const headers: Record<string, string> = error.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : {};
  sendJson(res, error.status, { error: { code: error.code, message: error.message, ...(error.field ? { field: error.field } : {}) } }, headers);
}

/** The request body as JSON, at most `limit` bytes. */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (type && !/json/i.test(type)) throw new HttpError(415, 'unsupported_media_type', `expected Content-Type: application/json, got ${type}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      req.resume();
      throw new HttpError(413, 'payload_too_large', `request body over ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, 'invalid_json', `the body is not valid JSON: ${(error as Error).message}`);
  }
}

/**
 * Percent-encodes the UTF-8 bytes of `text`, keeping RFC 5987's attr-chars: safe in any header,
 * whatever the text holds (a lone surrogate becomes U+FFFD), and read back by decodeURIComponent.
 */
export function percentEncode(text: string): string {
  let encoded = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const char = String.fromCharCode(byte);
    encoded += /^[A-Za-z0-9!#$&+.^_`|~-]$/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return encoded;
}

/** RFC 6266: an ASCII `filename` for old clients, the exact name in `filename*` (UTF-8). */
export function contentDisposition(fileName: string): string {
  const fallback = fileName.replace(/[^\x20-\x7e]|["\\%]/g, '_');
  return `attachment; filename="${fallback}"; filename*=UTF-8''${percentEncode(fileName)}`;
}
