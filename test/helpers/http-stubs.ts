/**
 * Answers for the API client, one request at a time, without a server (in the spirit of the
 * GitHub CLI's httpmock.Registry): register an answer per method and path, each answered once
 * (or `times` times); a request no stub matches fails, and so does, at the end of the test, a
 * stub that was never used. The fake context (`fakeContext({ http })`, `runCycle`) builds a
 * real ApiClient over these stubs, so the client's liberal reading, its retries, its errors and
 * its exit codes run as they do against a server.
 *
 * Uploads stream over node:http and do not pass through the stubs: test them against the
 * in-process server (`startServer`), as test/unit/upload.test.ts does.
 */
import { MockAgent } from 'undici';
import { onTestFinished } from 'vitest';

/** A request as a stub sees it: the body parsed as JSON where it is JSON, else its text. */
export interface StubRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body: unknown;
}

export interface StubAnswer {
  status: number;
  /** The body as sent (text); `json()` encodes one. */
  body: string;
  headers: Record<string, string>;
}

export type Responder = StubAnswer | ((request: StubRequest) => StubAnswer);

export interface StubOptions {
  /** How many requests it answers (1 unless told); each one is owed by the end of the test. */
  times?: number;
  /** Query parameters the request must carry (others may come too). */
  query?: Record<string, string>;
  /** The request's (parsed) body must pass this check for the stub to answer. */
  body?: (body: unknown) => boolean;
}

/** A JSON answer. */
export const json = (status: number, body: unknown, headers: Record<string, string> = {}): StubAnswer => ({
  status,
  body: JSON.stringify(body),
  headers: { 'content-type': 'application/json', ...headers },
});

/** A text answer (a proxy's HTML page, a plain-text error, an empty 204). */
export const text = (status: number, body: string, headers: Record<string, string> = {}): StubAnswer => ({
  status,
  body,
  headers: { 'content-type': 'text/plain', ...headers },
});

interface Stub {
  method: string;
  path: string;
  options: StubOptions;
  responder: Responder;
  times: number;
  used: number;
  /** Where the test registered it, for the message about an unused stub. */
  registeredAt: string;
}

export class HttpStubs {
  /** The API URL the fake context points at; `.invalid` never resolves, so nothing leaves the process. */
  readonly origin = 'http://cycle-stubs.invalid';
  /** What the ApiClient sends its requests through (`apiDispatcher` of the context). */
  readonly dispatcher: MockAgent;
  /** Every request a stub answered, in order. */
  readonly requests: StubRequest[] = [];
  /** Every request no stub matched (each also failed in the client). */
  readonly unmatched: string[] = [];
  private readonly stubs: Stub[] = [];

  constructor() {
    this.dispatcher = new MockAgent();
    this.dispatcher.disableNetConnect();
    // One interceptor that matches everything and asks this registry: matching, counting and
    // the unmatched list stay here, and undici's mock does the HTTP plumbing.
    this.dispatcher
      .get(this.origin)
      .intercept({ path: () => true, method: () => true })
      .reply((request) => {
        const answer = this.answer(request);
        return { statusCode: answer.status, data: answer.body, responseOptions: { headers: answer.headers } };
      })
      .persist();
  }

  /** Answers `method path` with `responder`, once (or `options.times` times). */
  register(method: string, path: string, responder: Responder, options: StubOptions = {}): void {
    const registeredAt =
      new Error().stack
        ?.split('\n')
        .slice(1)
        .find((line) => !line.includes('http-stubs'))
        ?.trim() ?? '';
    this.stubs.push({ method: method.toUpperCase(), path, options, responder, times: options.times ?? 1, used: 0, registeredAt });
  }

  /** Throws what went wrong: requests no stub matched, and stubs not used as often as registered. */
  verify(): void {
    const problems = [
      ...this.unmatched.map((request) => `no stub matched ${request}`),
      ...this.stubs
        .filter((stub) => stub.used < stub.times)
        .map((stub) => `stub ${stub.method} ${stub.path} was answered ${stub.used} of ${stub.times} time(s) (registered ${stub.registeredAt})`),
    ];
    if (problems.length > 0) throw new Error(`HTTP stubs:\n  ${problems.join('\n  ')}`);
  }

  private answer(raw: { path: string; method: string; headers?: unknown; body?: unknown }): StubAnswer {
    const url = new URL(raw.path, this.origin);
    const headers = headerRecord(raw.headers);
    const request: StubRequest = {
      method: raw.method.toUpperCase(),
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers,
      body: bodyOf(raw.body, headers['content-type']),
    };
    const stub = this.stubs.find(
      (candidate) =>
        candidate.used < candidate.times &&
        candidate.method === request.method &&
        candidate.path === request.path &&
        Object.entries(candidate.options.query ?? {}).every(([key, value]) => request.query[key] === value) &&
        (candidate.options.body?.(request.body) ?? true),
    );
    if (!stub) {
      const described = `${request.method} ${url.pathname}${url.search}`;
      this.unmatched.push(described);
      // The client reports it as a failure to reach the server; verify() names it for the test.
      throw new Error(`no HTTP stub for ${described}`);
    }
    stub.used++;
    this.requests.push(request);
    return typeof stub.responder === 'function' ? stub.responder(request) : stub.responder;
  }
}

/** Stubs for this test, verified when it ends (an unused stub or an unmatched request fails it). */
export function httpStubs(): HttpStubs {
  const stubs = new HttpStubs();
  onTestFinished(async () => {
    await stubs.dispatcher.close();
    stubs.verify();
  });
  return stubs;
}

function headerRecord(headers: unknown): Record<string, string> {
  const record: Record<string, string> = {};
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) record[String(headers[i]).toLowerCase()] = String(headers[i + 1]);
  } else if (typeof headers === 'object' && headers !== null) {
    for (const [key, value] of Object.entries(headers)) record[key.toLowerCase()] = String(value);
  }
  return record;
}

function bodyOf(body: unknown, contentType: string | undefined): unknown {
  if (body === undefined || body === null) return undefined;
  const textBody = typeof body === 'string' ? body : body instanceof Uint8Array ? Buffer.from(body).toString('utf8') : undefined;
  if (textBody === undefined) return body;
  if (contentType?.includes('json')) {
    try {
      return JSON.parse(textBody);
    } catch {
      return textBody;
    }
  }
  return textBody;
}
