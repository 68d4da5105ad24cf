import { Readable, Transform } from 'node:stream';
import type { Dispatcher } from 'undici';
import * as z from 'zod';
import { CycleError, ExitCode } from '../errors.js';
import { errorTextOf } from './schemas.js';
import { keepWasmAtBaseline } from '../util/gc.js';

/**
 * An error answer of the API: callers decide on its HTTP `status` (0: none was sent, no token)
 * and the server's error `code` (from the JSON error body, else `http_<status>`), never on the
 * message, which is for the user.
 */
export class ApiError extends CycleError {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    hint: string | undefined,
    exitCode: number,
  ) {
    super({ message, hint, exitCode });
    this.name = 'ApiError';
  }
}

export interface ApiClientOptions {
  baseUrl: string;
  token: string | undefined;
  version: string;
  debug?: (line: string) => void;
  /** Attempts per request (1 = no retry). */
  attempts?: number;
  /** Waiting for the answer's headers, for the next bytes of its body, and for any progress of an upload. */
  timeoutMs?: number;
  /**
   * The command's signal (Ctrl-C, SIGTERM): every request listens to it, so an interrupted
   * command never waits on a stalled server.
   */
  signal?: AbortSignal;
  /** The most bytes read of a JSON answer (default MAX_JSON_ANSWER_BYTES). */
  maxAnswerBytes?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  /**
   * Where requests go instead of undici's own agent: a test's stubs (test/helpers/http-stubs.ts).
   * Uploads stream over node:http (see `uploadWithNodeHttp`) and do not pass through it.
   */
  dispatcher?: Dispatcher;
}

export interface UploadBody {
  open: () => Readable;
  length: number;
  contentType: string;
  onProgress?: (sent: number) => void;
}

export interface RequestOptions<T> {
  schema?: z.ZodType<T>;
  json?: unknown;
  upload?: UploadBody;
  query?: Record<string, string | number | undefined>;
  /** Makes a POST safe to retry: the server answers a repeat with the first response. */
  idempotencyKey?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /**
   * Not bound to the command's signal: the one request an interrupted command still makes (the
   * cancel of `--cancel-on-interrupt`); the stall timeout still applies and a second Ctrl-C ends
   * the process.
   */
  afterInterrupt?: boolean;
  /** The answer is streamed by the caller (downloads, SSE). */
  raw?: boolean;
  /** Which statuses are answers, not errors (e.g. 404 to ask "does it exist?"). */
  accept?: number[];
  /** How long the body may send nothing before the request fails (default: timeoutMs). */
  idleMs?: number;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
}

export const RETRY_STATUSES = new Set([429, 502, 503, 504]);
/**
 * The most of a JSON answer cycle reads (128 MiB, docs/api.md): above any answer of the API (a
 * page of tasks is about 8 MiB; one task's `/output` tail is at most 64 MiB of text, which JSON
 * escaping can grow), and a server that sends more is refused instead of filling the memory.
 * Error bodies are read up to ERROR_BODY_BYTES only.
 */
export const MAX_JSON_ANSWER_BYTES = 128 << 20;
export const ERROR_BODY_BYTES = 64 << 10;
/** An event stream may be quiet this long (servers send `: ping` every 15 s) before it counts as dropped. */
export const STREAM_IDLE_MS = 60_000;
/** Tasks per page when following `/tasks`, `/results` and `/output` (the most a server gives). */
export const PAGE_LIMIT = 1000;

/**
 * The transport under the API client: one request over undici (node:http for uploads), with
 * retries that never act twice, answers read within a cap and checked against their schema,
 * and error answers turned into `ApiError`s. The routes are `ApiClient`'s (client.ts).
 */
export class Transport {
  protected readonly attempts: number;
  protected readonly timeoutMs: number;
  private dispatcher: Dispatcher | undefined;
  private undici: typeof import('undici') | undefined;

  constructor(protected readonly options: ApiClientOptions) {
    this.attempts = options.attempts ?? 5;
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.dispatcher = options.dispatcher;
  }

  get baseUrl(): string {
    return this.options.baseUrl;
  }

  private async lib(): Promise<typeof import('undici')> {
    if (!this.undici) {
      keepWasmAtBaseline(); // before undici compiles its HTTP parser (see there)
      this.undici = await import('undici');
    }
    // bodyTimeout: no byte of the body for this long fails the request (a stalled answer); set per request.
    this.dispatcher ??= new this.undici.Agent({ connectTimeout: 10_000, headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs, keepAliveTimeout: 4_000 });
    return this.undici;
  }

  private userAgent(): string {
    return `cycle/${this.options.version} (node ${process.versions.node}; ${process.platform})`;
  }

  async request<T>(method: string, path: string, options: RequestOptions<T> & { raw: true }): Promise<RawResponse>;
  async request<T>(
    method: string,
    path: string,
    options?: RequestOptions<T>,
  ): Promise<{ status: number; body: T; headers: Record<string, string | string[] | undefined> }>;
  async request<T>(method: string, path: string, options: RequestOptions<T> = {}): Promise<unknown> {
    if (!this.options.token) {
      throw new ApiError(0, 'no_token', `no token for ${this.options.baseUrl}`, 'run `cycle auth login`, or set CYCLE_TOKEN', ExitCode.auth);
    }
    const { request } = await this.lib();
    const url = new URL(this.options.baseUrl.replace(/\/$/, '') + path);
    for (const [key, value] of Object.entries(options.query ?? {})) if (value !== undefined) url.searchParams.set(key, String(value));
    const retryable = method === 'GET' || method === 'PUT' || method === 'DELETE' || method === 'HEAD' || options.idempotencyKey !== undefined;
    const what = `${method} ${url.pathname}`;
    const sleep = this.options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
    const callerSignals = [options.afterInterrupt ? undefined : this.options.signal, options.signal].filter((s): s is AbortSignal => s !== undefined);
    const caller = callerSignals.length > 1 ? AbortSignal.any(callerSignals) : callerSignals[0];
    const interrupted = (): CycleError =>
      caller?.reason instanceof CycleError ? caller.reason : new CycleError({ message: 'interrupted', exitCode: ExitCode.interrupted });
    const idleMs = options.idleMs ?? this.timeoutMs;
    let lastError: CycleError | undefined;
    for (let attempt = 1; attempt <= this.attempts; attempt++) {
      const started = Date.now();
      const headers: Record<string, string> = {
        authorization: `Bearer ${this.options.token}`,
        'user-agent': this.userAgent(),
        accept: 'application/json',
        ...options.headers,
      };
      if (options.idempotencyKey) headers['idempotency-key'] = options.idempotencyKey;
      let body: string | Readable | undefined;
      const stall = new AbortController();
      let stallTimer: NodeJS.Timeout | undefined;
      if (options.json !== undefined) {
        body = JSON.stringify(options.json);
        headers['content-type'] = 'application/json';
      } else if (options.upload) {
        headers['content-type'] = options.upload.contentType;
        headers['content-length'] = String(options.upload.length);
        body = watchProgress(options.upload, this.timeoutMs, stall, (timer) => (stallTimer = timer));
      }
      if (caller?.aborted) throw interrupted();
      const signal = caller ? AbortSignal.any([caller, stall.signal]) : stall.signal;
      try {
        const response = options.upload
          ? await uploadWithNodeHttp(url, method, headers, body as Readable, signal, this.timeoutMs)
          : await request(url, {
              method: method as Dispatcher.HttpMethod,
              headers,
              body: body ?? null,
              signal,
              dispatcher: this.dispatcher!,
              bodyTimeout: idleMs,
            });
        clearTimeout(stallTimer);
        this.options.debug?.(`${what} → ${response.statusCode} in ${Date.now() - started}ms${attempt > 1 ? ` (attempt ${attempt})` : ''}`);
        if (RETRY_STATUSES.has(response.statusCode) && retryable && attempt < this.attempts) {
          const retryAfter = parseRetryAfter(response.headers['retry-after']);
          await response.body.dump().catch(() => undefined);
          const delay = retryAfter ?? this.backoff(attempt);
          this.options.debug?.(`${what}: HTTP ${response.statusCode}, retrying in ${delay}ms`);
          await sleep(delay);
          continue;
        }
        if (response.statusCode >= 400 && !(options.accept ?? []).includes(response.statusCode)) {
          throw await apiError(what, response.statusCode, response.body, this.options.baseUrl);
        }
        if (options.raw) return { status: response.statusCode, headers: response.headers, body: response.body };
        const text = await readCapped(response.body, response.headers, this.options.maxAnswerBytes ?? MAX_JSON_ANSWER_BYTES, what);
        let parsed: unknown = null;
        if (text.trim() !== '') {
          try {
            parsed = JSON.parse(text);
          } catch {
            throw new CycleError({
              message: `${what}: the server answered ${response.statusCode} with something that is not JSON: ${text.slice(0, 80)}`,
              exitCode: ExitCode.network,
            });
          }
        }
        if (options.schema && response.statusCode < 400) {
          const result = options.schema.safeParse(parsed);
          if (!result.success) throw unexpectedAnswer(what, describeShapeIssue(result.error.issues[0], parsed));
          return { status: response.statusCode, body: result.data, headers: response.headers };
        }
        return { status: response.statusCode, body: parsed as T, headers: response.headers };
      } catch (error) {
        clearTimeout(stallTimer);
        if (error instanceof CycleError) throw error;
        if (caller?.aborted) throw interrupted();
        const reason = stall.signal.aborted ? `no progress for ${Math.round(this.timeoutMs / 1000)}s` : describeNetworkError(error, idleMs);
        lastError = new CycleError({
          message: `cannot reach ${this.options.baseUrl} (${what}): ${reason}`,
          hint: 'check that the server runs and CYCLE_API_URL is right (`cycle doctor`)',
          exitCode: ExitCode.network,
        });
        if (!retryable || attempt >= this.attempts) throw lastError;
        const delay = this.backoff(attempt);
        this.options.debug?.(`${what}: ${reason}, retrying in ${delay}ms`);
        await sleep(delay);
      }
    }
    throw lastError ?? new CycleError({ message: `${what}: no answer`, exitCode: ExitCode.network });
  }

  /** Full jitter: a random wait up to base·2^(attempt-1), capped. */
  private backoff(attempt: number): number {
    const cap = Math.min(this.options.maxDelayMs ?? 10_000, (this.options.baseDelayMs ?? 500) * 2 ** (attempt - 1));
    return Math.round((this.options.random ?? Math.random)() * cap);
  }

  async close(): Promise<void> {
    await this.dispatcher?.close().catch(() => undefined);
  }
}

/**
 * A streaming upload over node:http. Measured here for a 735 MB tarball: 85 MB peak RSS, where
 * undici's request streaming took 130 MB (with a stream or an async-iterable body alike); the
 * upload of 1 GiB has a 150 MB budget. Everything else goes through undici.
 */
async function uploadWithNodeHttp(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: Readable,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<{ statusCode: number; headers: Record<string, string | string[] | undefined>; body: Dispatcher.ResponseData['body'] }> {
  const http = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, signal });
    // No bytes either way for this long (sending or waiting for the answer): a stalled server.
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('no answer in time'), { code: 'UND_ERR_HEADERS_TIMEOUT' })));
    req.on('error', reject);
    body.on('error', (error) => req.destroy(error));
    req.on('response', (res) => {
      // The answer's body read as undici's is (readCapped iterates it; dump drops it).
      const dump = async (): Promise<void> => {
        res.resume();
      };
      const bodyLike = { dump, destroy: () => res.destroy(), [Symbol.asyncIterator]: () => res[Symbol.asyncIterator]() };
      resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body: bodyLike as unknown as Dispatcher.ResponseData['body'] });
    });
    body.pipe(req);
  });
}

/** The upload body, counting bytes for the progress bar and aborting when nothing moves. */
function watchProgress(upload: UploadBody, timeoutMs: number, stall: AbortController, setTimer: (timer: NodeJS.Timeout) => void): Readable {
  let sent = 0;
  let timer: NodeJS.Timeout = setTimeout(() => stall.abort(), timeoutMs);
  setTimer(timer);
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      sent += chunk.length;
      clearTimeout(timer);
      timer = setTimeout(() => stall.abort(), timeoutMs);
      setTimer(timer);
      upload.onProgress?.(sent);
      callback(null, chunk);
    },
    flush(callback) {
      clearTimeout(timer);
      // Waiting for the answer is then the headers timeout's job.
      callback();
    },
  });
  const source = upload.open();
  source.on('error', (error) => counter.destroy(error));
  return source.pipe(counter);
}

/**
 * An answer's body as text, at most `limit` bytes: a Content-Length above it is refused before a
 * byte is read, and a body that grows past it is dropped there (or cut, with `truncate`, for the
 * error bodies that only feed a message).
 */
async function readCapped(
  body: Dispatcher.ResponseData['body'],
  headers: Record<string, string | string[] | undefined>,
  limit: number,
  what: string,
  truncate = false,
): Promise<string> {
  const tooLarge = (): CycleError =>
    new CycleError({
      message: `${what}: the server's answer is larger than ${limit >> 20} MiB, the most cycle reads of an answer; nothing of it was used`,
      hint: 'the server is not a cycle API server or misbehaves; check --api-url / CYCLE_API_URL (`cycle doctor`)',
      exitCode: ExitCode.network,
    });
  const declared = Number(headers['content-length']);
  if (!truncate && Number.isFinite(declared) && declared > limit) {
    body.destroy();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      if (!truncate) throw tooLarge();
      chunks.push(chunk.subarray(0, chunk.length - (size - limit)));
      break;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseRetryAfter(value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text) return undefined;
  const seconds = Number(text);
  if (Number.isFinite(seconds)) return Math.min(60_000, Math.max(0, seconds * 1000));
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.min(60_000, Math.max(0, date - Date.now()));
}

async function apiError(what: string, status: number, body: Dispatcher.ResponseData['body'], baseUrl: string): Promise<ApiError> {
  const text = await readCapped(body, {}, ERROR_BODY_BYTES, what, true).catch(() => '');
  // The error body is not documented (platform-facts.md B): JSON of any shape, or text.
  const parsed = parsedBody(text);
  const message = (parsed === undefined ? undefined : errorTextOf(parsed))?.slice(0, 300) ?? (text.trim().slice(0, 300) || `HTTP ${status}`);
  const code = errorCodeOf(parsed) ?? `http_${status}`;
  if (status === 401 || status === 403) {
    return new ApiError(
      status,
      code,
      `the server refused the token (HTTP ${status}): ${message}`,
      `run \`cycle auth login --api-url ${baseUrl}\`, or set CYCLE_TOKEN`,
      ExitCode.auth,
    );
  }
  if (status === 402) {
    const shortfall = findShortfall(parsedBody(text));
    return new ApiError(
      status,
      code,
      `${what}: the account has too little money${shortfall === undefined ? '' : `: short by $${shortfall.toFixed(2)}`} (HTTP 402): ${message}`,
      'fund the account (`cycle account balance` shows what is available), then run the same command again',
      ExitCode.payment,
    );
  }
  if (status >= 500)
    return new ApiError(
      status,
      code,
      `${what} failed on the server (HTTP ${status}): ${message}`,
      'try again later; if it persists, look at the server log',
      ExitCode.network,
    );
  return new ApiError(status, code, `${message} (HTTP ${status})`, undefined, ExitCode.failure);
}

/**
 * An answer that cycle cannot use (a field it needs is absent or of another type): the route,
 * the field and what was expected, exit 5. `problem` reads on from "it": "has no `value` field".
 */
export function unexpectedAnswer(what: string, problem: string): CycleError {
  return new CycleError({
    message: `cycle does not understand the server's answer to ${what}: it ${problem}`,
    hint: 'the server may speak another version of the API; check CYCLE_API_URL (`cycle doctor`)',
    exitCode: ExitCode.network,
  });
}

const EXPECTED_WORDS: Record<string, string> = {
  string: 'text',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  array: 'a list',
  object: 'a JSON object',
};

/**
 * What is wrong with an answer, in the words of the field at fault: "has no `status` field
 * (expected text)", or "has `counts.total` = "x" (expected a number)".
 */
function describeShapeIssue(issue: z.core.$ZodIssue | undefined, answer: unknown): string {
  if (!issue) return 'does not have the expected shape';
  // One of several shapes (a list, or an object holding it): the branch that got furthest says most.
  if (issue.code === 'invalid_union' && issue.errors.length > 0) {
    const deepest = issue.errors.map((issues) => issues[0]).reduce((best, next) => ((next?.path.length ?? -1) > (best?.path.length ?? -1) ? next : best));
    if (deepest) return describeShapeIssue({ ...deepest, path: [...issue.path, ...deepest.path] }, answer);
  }
  const field = issue.path.map(String).join('.');
  if (issue.code === 'custom') return `${issue.message}${issue.path.length > 1 ? ` (in \`${field}\`)` : ''}`;
  const expected = issue.code === 'invalid_type' ? `expected ${EXPECTED_WORDS[issue.expected] ?? issue.expected}` : issue.message;
  if (field === '') return `is not what was expected (${expected}, got ${JSON.stringify(answer)?.slice(0, 60) ?? 'nothing'})`;
  let value: unknown = answer;
  for (const key of issue.path) value = typeof value === 'object' && value !== null ? Reflect.get(value, key) : undefined;
  if (value === undefined) return `has no \`${field}\` field (${expected})`;
  return `has \`${field}\` = ${JSON.stringify(value)?.slice(0, 60)} (${expected})`;
}

/** The server's error code (`error.code` or `code`), if it sends one as text. */
function errorCodeOf(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const nested: unknown = Reflect.get(body, 'error');
  const code: unknown = typeof nested === 'object' && nested !== null ? Reflect.get(nested, 'code') : Reflect.get(body, 'code');
  return typeof code === 'string' && code !== '' ? code : undefined;
}

function parsedBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * The shortfall in a 402's quote, wherever the server put it (`shortfall_usd` at the top, in
 * `quote`, in `error`, ...): its shape is not documented, so any key naming a shortfall, up to
 * three levels down, with a number (or a number as text).
 */
export function findShortfall(body: unknown, depth = 0): number | undefined {
  if (typeof body !== 'object' || body === null || depth > 3) return undefined;
  for (const [key, value] of Object.entries(body)) {
    if (!/shortfall/i.test(key)) continue;
    const amount = typeof value === 'number' ? value : typeof value === 'string' ? Number(value.replace(/^\$/, '')) : Number.NaN;
    if (Number.isFinite(amount)) return amount;
  }
  for (const value of Object.values(body)) {
    const found = findShortfall(value, depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

function describeNetworkError(error: unknown, idleMs: number): string {
  const e = error as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = e.code ?? e.cause?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET':
      return 'the connection was dropped';
    case 'UND_ERR_HEADERS_TIMEOUT':
      return 'no answer in time';
    case 'UND_ERR_BODY_TIMEOUT':
      return `the answer stalled (no data for ${Math.round(idleMs / 1000)}s; CYCLE_HTTP_TIMEOUT sets how long to wait)`;
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connecting timed out';
    case 'ENOTFOUND':
      return 'unknown host';
    default:
      return e.message ?? String(error);
  }
}
