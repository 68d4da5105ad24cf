import { randomBytes, timingSafeEqual } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { DomainError, type ProblemKind } from '../errors.js';
import { MAX_JSON_DEPTH, MAX_NAME_BYTES, type HttpLimits } from '../limits.js';
import type { MachineAuth } from '../machines/auth.js';
import { cookieValue, type WebSession, type WebSessions } from '../web/sessions.js';
import { yieldToIo } from '../../util/pace.js';

/** An error answered as `{error: {code, message, field?}}` with an HTTP status. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
    /** Fields answered beside `error` (a 402's `quote`). */
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** The one table from a service's problem to the HTTP status that answers it. */
export const STATUS_OF_PROBLEM: Record<ProblemKind, number> = {
  malformed: 400,
  unauthorized: 401,
  'payment-required': 402,
  'not-found': 404,
  conflict: 409,
  gone: 410,
  'too-large': 413,
  'unsupported-media-type': 415,
  invalid: 422,
  unavailable: 503,
  'insufficient-storage': 507,
  failed: 500,
};

export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** The enrolled machine whose token called a machine route (undefined on every other route). */
  machine?: { tokenId: string; name: string | undefined };
  /** The web page's session, when the request was authenticated by its cookie (not by a token). */
  session?: { id: string; session: WebSession };
}

/**
 * Who may call a route: anyone (`public`), the user's token (`user`: every route of the API), or
 * a machine token (`machine`: the daemon's `/api/v1/machine/...` routes only). Neither token
 * opens the other's routes.
 */
export type AuthClass = 'public' | 'user' | 'machine';

export type Handler = (ctx: RouteContext) => Promise<void> | void;

interface Route {
  method: string;
  /** As added (`/api/v1/jobs/:id`): what `sessionRoutes` names. */
  path: string;
  /** The path's text before its first parameter: a route whose prefix the request's path lacks is not tried (cheaper than its pattern). */
  prefix: string;
  pattern: RegExp;
  keys: string[];
  handler: Handler;
  auth: AuthClass;
}

export interface RouterOptions {
  token: string;
  /** Where internal errors are told in full (the client gets a reference, never a host path). */
  log: (line: string) => void;
  /** Host paths (the data folder) that an error message must never show: replaced by a placeholder. */
  hostPaths: string[];
  /** Machine tokens (`cycle daemon run`); without it no machine route answers. */
  machines?: Pick<MachineAuth, 'authenticate'>;
  /** The web page's sessions: a session cookie authenticates the routes in `sessionRoutes` (user routes only, never a machine's). */
  sessions?: WebSessions;
  /** `METHOD /path/:param` of the routes the web page calls (src/server/web/session-routes.ts). */
  sessionRoutes?: ReadonlySet<string>;
}

/** The length a request announced (`Content-Length`), 0 when it gave none: checked against a limit before its body is read. */
export function declaredLength(req: IncomingMessage): number {
  return Number(req.headers['content-length'] ?? 0);
}

/** A request header's first value (undefined when it is absent). */
export function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/** A small router: `/api/v1/jobs/:id` patterns, bearer-token auth on every non-public route. */
export class Router {
  private readonly routes: Route[] = [];
  /**
   * The machine a request's token names, as `authenticated` found it when the request came
   * (the HTTP layer asks before `handle`, in the same turn): `handle` takes it from here instead
   * of hashing and looking up the token a second time. Taken once: a later call looks again.
   */
  private readonly machineOfRequest = new WeakMap<IncomingMessage, { tokenId: string; name: string | undefined } | undefined>();

  constructor(private readonly options: RouterOptions) {}

  add(method: string, path: string, handler: Handler, options: { public?: boolean; auth?: AuthClass } = {}): void {
    const keys: string[] = [];
    const pattern = new RegExp(
      '^' +
        path.replace(/\/:([a-z_]+)/g, (_match, key: string) => {
          keys.push(key);
          return '/([^/]+)';
        }) +
        '/?$',
    );
    const param = path.indexOf('/:');
    const prefix = param === -1 ? path : path.slice(0, param + 1);
    this.routes.push({ method, path, prefix, pattern, keys, handler, auth: options.auth ?? (options.public === true ? 'public' : 'user') });
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Every answer: no type sniffing, no framing, no referrer; an API answer is inert if opened as a page (the web page's own answers set their own policy).
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'; sandbox");
    try {
      // Split by hand: `new URL` would read `//host/...` as a host and resolve `..` segments.
      const target = req.url ?? '/';
      if (!target.startsWith('/')) throw new HttpError(400, 'invalid_path', 'the request target must be a path starting with "/"');
      const queryAt = target.indexOf('?');
      const pathname = queryAt === -1 ? target : target.slice(0, queryAt);
      const query = new URLSearchParams(queryAt === -1 ? '' : target.slice(queryAt + 1));
      const matching = this.routes.filter((r) => pathname.startsWith(r.prefix) && r.pattern.test(pathname));
      if (matching.length === 0) throw new HttpError(404, 'not_found', `no route ${pathname}`);
      const route = matching.find((r) => r.method === req.method);
      if (!route)
        throw new HttpError(
          405,
          'method_not_allowed',
          `${req.method} is not allowed on ${pathname}; use ${[...new Set(matching.map((r) => r.method))].join(' or ')}`,
        );
      const machine = route.auth === 'machine' ? this.authorizeMachine(req) : undefined;
      const session = route.auth === 'user' ? this.authorize(req, route) : undefined;
      const match = route.pattern.exec(pathname)!;
      const params: Record<string, string> = {};
      route.keys.forEach((key, i) => {
        params[key] = decodeParam(key, match[i + 1]!);
      });
      await route.handler({ req, res, params, query, ...(machine ? { machine } : {}), ...(session ? { session } : {}) });
    } catch (error) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // Answered before the body was read (413, 401 on an upload): the connection cannot be reused.
      if (!req.complete) res.setHeader('Connection', 'close');
      sendError(res, this.answerFor(error, req));
    }
  }

  /** The answer for an error: the client's fault as a 4xx; anything else a 500 that shows no internals. */
  private answerFor(error: unknown, req: IncomingMessage): HttpError {
    if (error instanceof HttpError) return new HttpError(error.status, error.code, this.redact(error.message), error.field, error.extra);
    if (error instanceof DomainError) return new HttpError(STATUS_OF_PROBLEM[error.kind], error.code, this.redact(error.message), error.field, error.extra);
    const code = (error as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ENAMETOOLONG') return new HttpError(400, 'name_too_long', `a name in the request is too long: at most ${MAX_NAME_BYTES} bytes`);
    const reference = randomBytes(4).toString('hex');
    const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
    this.options.log(`internal error ${reference} on ${req.method} ${req.url?.split('?')[0]}: ${detail}`);
    return new HttpError(500, 'internal', `internal error (reference ${reference}: the server's log has the details)`);
  }

  private redact(message: string): string {
    let text = message;
    for (const hostPath of this.options.hostPaths) if (hostPath) text = text.split(hostPath).join('<data-dir>');
    return text;
  }

  /**
   * Whether the request carries this server's token or an enrolled machine's (the HTTP layer
   * counts such requests apart: a daemon's uploads and long polls are never held to the limits
   * of unauthenticated requests).
   */
  authenticated(req: IncomingMessage): boolean {
    if (this.userToken(req)) return true;
    const machine = this.machineToken(req);
    this.machineOfRequest.set(req, machine);
    return machine !== undefined || this.sessionOf(req) !== undefined;
  }

  private sessionOf(req: IncomingMessage): { id: string; session: WebSession } | undefined {
    const sessions = this.options.sessions;
    const id = sessions && cookieValue(headerValue(req, 'cookie'), sessions.cookieName);
    const session = id ? sessions.session(id) : undefined;
    return session && id ? { id, session } : undefined;
  }

  private userToken(req: IncomingMessage): boolean {
    const bearer = bearerOf(req);
    if (bearer === undefined) return false;
    const given = Buffer.from(bearer);
    const expected = Buffer.from(this.options.token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  private machineToken(req: IncomingMessage): { tokenId: string; name: string | undefined } | undefined {
    const bearer = bearerOf(req);
    return bearer === undefined || !this.options.machines ? undefined : this.options.machines.authenticate(bearer);
  }

  /**
   * The user's token authenticates every user route; the web page's session cookie only the
   * routes it calls, and a change (anything but GET/HEAD) only from the page itself: same origin,
   * with the session's CSRF value in `X-Cycle-CSRF` (a cross-site form or fetch cannot send it).
   * Returns the session when the cookie authenticated the request.
   */
  private authorize(req: IncomingMessage, route: Route): { id: string; session: WebSession } | undefined {
    if (req.headers.authorization === undefined && this.options.sessionRoutes?.has(`${route.method} ${route.path}`)) {
      const session = this.sessionOf(req);
      if (session) {
        refuseCrossSite(req, session.session);
        return session;
      }
    }
    if (bearerOf(req) === undefined) throw new HttpError(401, 'unauthorized', 'missing bearer token: send "Authorization: Bearer <token>"');
    if (this.userToken(req)) return undefined;
    if (this.machineToken(req))
      throw new HttpError(403, 'machine_token', "a machine token may call only the daemon's routes (/api/v1/machine/...): use the user's token here");
    throw new HttpError(401, 'unauthorized', 'invalid token');
  }

  private authorizeMachine(req: IncomingMessage): { tokenId: string; name: string | undefined } {
    if (bearerOf(req) === undefined) throw new HttpError(401, 'unauthorized', 'missing bearer token: send "Authorization: Bearer <machine token>"');
    const found = this.machineOfRequest.has(req);
    const machine = found ? this.machineOfRequest.get(req) : this.machineToken(req);
    this.machineOfRequest.delete(req);
    if (machine) return machine;
    if (this.userToken(req))
      throw new HttpError(403, 'not_a_machine_token', "the machine routes take a machine token (`cycle machine token create`), not the user's token");
    throw new HttpError(401, 'unauthorized', 'invalid or revoked machine token');
  }
}

/**
 * A request authenticated by the session cookie must come from the page: `Sec-Fetch-Site`, when
 * the browser sends it, says same-origin (or none: typed in the address bar); a change also needs
 * an `Origin` (when sent) naming this host and the session's CSRF value in `X-Cycle-CSRF`.
 */
function refuseCrossSite(req: IncomingMessage, session: WebSession): void {
  const site = headerValue(req, 'sec-fetch-site');
  const refuse = (why: string): never => {
    throw new HttpError(403, 'cross_site_refused', `refused: ${why}; the web page sends its requests from this server's own origin`);
  };
  if (site !== undefined && site !== 'same-origin' && site !== 'none') refuse(`the request came from another site (Sec-Fetch-Site: ${site})`);
  if (req.method === 'GET' || req.method === 'HEAD') return;
  const origin = headerValue(req, 'origin');
  if (origin !== undefined) {
    let host: string;
    try {
      host = new URL(origin).host;
    } catch {
      return refuse(`the Origin header ${origin.slice(0, 100)} is not an origin`);
    }
    if (host !== headerValue(req, 'host')) refuse(`the request came from ${origin.slice(0, 100)}`);
  }
  const given = Buffer.from(headerValue(req, 'x-cycle-csrf') ?? '');
  const expected = Buffer.from(session.csrf);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) refuse('the X-Cycle-CSRF header is missing or wrong');
}

function bearerOf(req: IncomingMessage): string | undefined {
  const match = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  return match ? match[1]!.trim() : undefined;
}

/** A path parameter, %-decoded: a malformed escape or an over-long name is the client's fault. */
function decodeParam(key: string, raw: string): string {
  let value: string;
  try {
    value = decodeURIComponent(raw);
  } catch {
    throw new HttpError(400, 'invalid_path', `the path's ${key} has a malformed %-escape: encode it with encodeURIComponent`, key);
  }
  if (Buffer.byteLength(value) > MAX_NAME_BYTES)
    throw new HttpError(400, 'name_too_long', `the path's ${key} is ${Buffer.byteLength(value)} bytes long: at most ${MAX_NAME_BYTES}`, key);
  return value;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(text);
}

/** What `sendJsonStreamed` writes before it lets the event loop run other work. */
const STREAM_CHUNK_CHARS = 256 * 1024;

/**
 * Sends a JSON object as `sendJson` does, but written a piece at a time (each top-level field,
 * each element of a top-level array) with the event loop free between chunks and the socket's
 * backpressure respected: a page of several MiB never blocks other requests while it is
 * serialized, and is never one string. Stops quietly when the client goes away.
 */
export async function sendJsonStreamed(res: ServerResponse, status: number, body: Record<string, unknown>): Promise<void> {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
  let pending = '';
  const flush = async (): Promise<boolean> => {
    if (res.destroyed) return false;
    const more = res.write(pending);
    pending = '';
    if (!more)
      await new Promise<void>((resolve) => {
        const done = (): void => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done).on('close', done);
      });
    else await new Promise<void>((resolve) => setImmediate(resolve));
    return !res.destroyed;
  };
  const put = async (text: string): Promise<boolean> => {
    pending += text;
    return pending.length < STREAM_CHUNK_CHARS || (await flush());
  };
  let first = true;
  await put('{');
  for (const [key, value] of Object.entries(body)) {
    if (value === undefined) continue;
    if (!(await put(`${first ? '' : ','}${JSON.stringify(key)}:`))) return;
    first = false;
    if (!Array.isArray(value)) {
      if (!(await put(JSON.stringify(value)))) return;
      continue;
    }
    if (!(await put('['))) return;
    for (const [i, element] of value.entries()) if (!(await put(`${i ? ',' : ''}${JSON.stringify(element) ?? 'null'}`))) return;
    if (!(await put(']'))) return;
  }
  pending += '}';
  if (res.destroyed) return;
  res.end(pending);
}

export function sendError(res: ServerResponse, error: HttpError): void {
  const headers: Record<string, string> = error.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : error.status === 503 ? { 'Retry-After': '1' } : {};
  sendJson(res, error.status, { ...error.extra, error: { code: error.code, message: error.message, ...(error.field ? { field: error.field } : {}) } }, headers);
}

/** A body this long is parsed after a turn of the event loop (see readJson). */
const YIELD_BEFORE_PARSE_CHARS = 64 * 1024;

/** The request body as JSON, at most `limit` bytes. */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const type = req.headers['content-type'] ?? '';
  if (type && !/json/i.test(type)) throw new HttpError(415, 'unsupported_media_type', `expected Content-Type: application/json, got ${type}`);
  if (Number(req.headers['content-length'] ?? 0) > limit) throw new HttpError(413, 'payload_too_large', `request body over ${limit} bytes`);
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
  const tooDeepAt = depthExceededAt(text, MAX_JSON_DEPTH);
  if (tooDeepAt !== -1)
    throw new HttpError(400, 'json_too_deep', `the body nests arrays and objects more than ${MAX_JSON_DEPTH} deep (at character ${tooDeepAt}): flatten it`);
  // Other requests go first between the scan and the parse of a big body (each ~5 ms for a
  // 100,000-item fan-out's 600 KB, one stall with the parse's followers otherwise).
  if (text.length >= YIELD_BEFORE_PARSE_CHARS) await yieldToIo();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, 'invalid_json', `the body is not valid JSON: ${(error as Error).message}`);
  }
  // Walked only when the text could hold the key at all (a 100,000-item fan-out's walk, building
  // a path per element, was ~25 ms of one submit's stall).
  const protoAt = mayHoldProtoKey(text) ? protoKeyAt(value, '') : undefined;
  if (protoAt !== undefined)
    throw new HttpError(
      422,
      'invalid_request',
      `${protoAt || '(body)'}: the key "__proto__" is not accepted (JavaScript objects cannot keep it as data): rename it`,
      protoAt ? `${protoAt}.__proto__` : '__proto__',
    );
  return value;
}

/**
 * Whether JSON text can hold a `__proto__` key: it is written as such, or through a `\uXXXX`
 * escape (JSON's other escapes make no letter or `_`). False means no key of it is `__proto__`.
 */
export function mayHoldProtoKey(text: string): boolean {
  return text.includes('__proto__') || text.includes('\\u');
}

/**
 * Where a parsed body holds a `__proto__` key (a dotted path to the object that has it, '' for
 * the body itself), or undefined. Refused rather than kept: every copy of the object (a spread,
 * a schema's parse) would drop it or set the prototype, so it could never reach a task as data.
 */
function protoKeyAt(value: unknown, path: string): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  if (Array.isArray(value)) {
    for (const [i, element] of value.entries()) {
      const found = protoKeyAt(element, path ? `${path}.${i}` : String(i));
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (Object.hasOwn(value, '__proto__')) return path;
  for (const [key, element] of Object.entries(value)) {
    const found = protoKeyAt(element, path ? `${path}.${key}` : key);
    if (found !== undefined) return found;
  }
  return undefined;
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

/**
 * Where `text` (JSON) opens its `max + 1`th nested array or object, or -1. One pass, brackets
 * inside strings skipped: checked before parsing, since a deep enough body overflows the stack
 * of JSON.parse and of everything that walks the value afterwards.
 */
export function depthExceededAt(text: string, max: number): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return i;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return -1;
}

/**
 * A node:http server that slow and hostile clients cannot exhaust: headers must arrive in time,
 * uploads time out on idleness (not on total time: a big push on a slow link is fine), an answer
 * nobody reads is cut, and connections are capped, an idle one making room for a newcomer.
 * Requests are counted by class: those without the token that send a body (public routes, or
 * anything unauthenticated) may hold at most `maxPublicBodies` connections, each for at most
 * `publicBodyTimeoutMs`, so they can never take the connections /health and authenticated work
 * need (SSE streams have their own cap, StreamGate). `authenticated` tells the classes apart.
 */
export function createHttpServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  limits: HttpLimits,
  authenticated: (req: IncomingMessage) => boolean = () => false,
  /** HTTPS from this certificate and key (`cycle server --tls-cert --tls-key`); plain HTTP without. */
  tls?: { cert: Buffer; key: Buffer },
): http.Server {
  const settings: http.ServerOptions = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: 0,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    // How often expired header timeouts are looked for (Node's default: every 30 s).
    connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
  };
  const server: http.Server = tls ? https.createServer({ ...settings, cert: tls.cert, key: tls.key }) : http.createServer(settings);
  server.timeout = limits.idleTimeoutMs;
  const inFlight = new WeakMap<Socket, ServerResponse>();
  const sockets = new Set<Socket>();
  // Unauthenticated requests whose body is still arriving.
  const publicBodies = new Set<ServerResponse>();
  // Node times headers only once a request's first byte came: a connection that never sends one gets this timer.
  const firstRequestTimers = new WeakMap<Socket, NodeJS.Timeout>();
  // Over TLS a request's socket is the TLS one: counted from the handshake, so the two match.
  server.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => {
    if (sockets.size >= limits.maxConnections) {
      // Oldest first: a connection with no request in progress (idle, or still sending headers).
      let idle: Socket | undefined;
      for (const candidate of sockets) {
        if (!inFlight.has(candidate)) {
          idle = candidate;
          break;
        }
      }
      if (!idle) {
        const body = JSON.stringify({
          error: { code: 'too_many_connections', message: `the server has ${limits.maxConnections} connections busy: retry shortly` },
        });
        socket.end(
          `HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n${body}`,
        );
        return;
      }
      idle.destroy();
      sockets.delete(idle);
    }
    sockets.add(socket);
    const firstRequest = setTimeout(() => socket.destroy(), limits.headersTimeoutMs).unref();
    firstRequestTimers.set(socket, firstRequest);
    socket.once('close', () => {
      clearTimeout(firstRequest);
      sockets.delete(socket);
    });
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    clearTimeout(firstRequestTimers.get(req.socket));
    inFlight.set(req.socket, res);
    res.once('close', () => {
      if (inFlight.get(req.socket) === res) inFlight.delete(req.socket);
    });
    const hasBody = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    if (hasBody && !req.complete && !authenticated(req)) {
      if (publicBodies.size >= limits.maxPublicBodies) {
        res.setHeader('Connection', 'close');
        sendError(res, new HttpError(503, 'too_many_requests', `the server has ${limits.maxPublicBodies} unauthenticated uploads in progress: retry shortly`));
        res.once('finish', () => req.socket.destroy());
        return;
      }
      publicBodies.add(res);
      // A total deadline, not an idleness one: a body that trickles a byte a second is still cut.
      const deadline = setTimeout(() => {
        if (req.complete) return;
        if (!res.headersSent) {
          res.setHeader('Connection', 'close');
          sendError(res, new HttpError(408, 'request_timeout', `the request body did not arrive within ${Math.round(limits.publicBodyTimeoutMs / 1000)} s`));
          res.once('finish', () => req.socket.destroy());
        } else req.socket.destroy();
      }, limits.publicBodyTimeoutMs).unref();
      const release = (): void => {
        clearTimeout(deadline);
        publicBodies.delete(res);
      };
      req.once('end', release);
      res.once('close', release);
    }
    handler(req, res);
  });
  // Nothing moved on the socket for idleTimeoutMs (with a listener here, Node leaves the decision to us).
  server.on('timeout', (socket: Socket) => {
    const res = inFlight.get(socket);
    if (!res) return void socket.destroy(); // between requests
    if (!res.req.complete) {
      // An upload that stopped sending: say so, and close (the handler sees the body end early).
      if (!res.headersSent) {
        res.setHeader('Connection', 'close');
        sendError(res, new HttpError(408, 'request_timeout', `the request body stalled: nothing arrived for ${Math.round(limits.idleTimeoutMs / 1000)} s`));
        res.once('finish', () => socket.destroy());
      } else socket.destroy();
      return;
    }
    if (res.writableLength > 0) socket.destroy(); // the client stopped reading the answer
    // Otherwise the server is still working on the answer (a long extraction): not the client's idleness.
  });
  return server;
}
