/**
 * What the server's HTTP layer allows a client, in one place (docs/api.md, "Limits"). Each
 * closes a way for a slow or hostile client to hold the server's memory, sockets or time.
 */
export interface HttpLimits {
  /** Open TCP connections. Past it, an idle one (no request in progress) makes room; else 503. */
  maxConnections: number;
  /** From a connection's first byte (or its last answer) to the end of the request's headers. */
  headersTimeoutMs: number;
  /** A request body that sends nothing this long is answered 408; an answer nobody reads is cut. */
  idleTimeoutMs: number;
  /** A kept-alive connection with no request this long is closed. */
  keepAliveTimeoutMs: number;
  /**
   * Requests without a valid token that send a body (`POST /api/v1/feedback`, or anything sent
   * unauthenticated) in progress at once; past it, 503. Small beside maxConnections, so public
   * routes can never take the connections that /health and authenticated work need.
   */
  maxPublicBodies: number;
  /** The whole body of such a request must arrive within this (a trickle is cut with 408). */
  publicBodyTimeoutMs: number;
  /** SSE streams open at once; past it, 503 with Retry-After. */
  maxStreams: number;
  /** An SSE client whose buffer does not drain this long is dropped. */
  streamStallMs: number;
  /** An SSE client is dropped at once when this many bytes wait for it (the stream pauses well before). */
  streamMaxBufferedBytes: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  maxConnections: 256,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  maxPublicBodies: 32,
  publicBodyTimeoutMs: 10_000,
  maxStreams: 64,
  streamStallMs: 30_000,
  streamMaxBufferedBytes: 4 << 20,
};

/** JSON bodies nest at most this deep (deeper ones would overflow the stack of the parser or the checks). */
export const MAX_JSON_DEPTH = 64;

/** A name or id in a path: at most this many bytes (a file name's limit on every common file system). */
export const MAX_NAME_BYTES = 255;
