/**
 * What the server's HTTP layer allows a client, in one place (docs/api.md, "Limits"). Each
 * closes a way for a slow or hostile client to hold the server's memory, sockets or time.
 */
export interface HttpLimits {
  /** Open TCP connections. Past it, an idle one (no request in progress) makes room; else 503. (Node raises the soft fd limit to the hard one.) */
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
  // A machine pool's daemons each hold a long poll and send heartbeats, renewals and reports
  // beside it: 200 machines (issue 20's figure) take several hundred (`npm run bench pool`).
  maxConnections: 1024,
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

/**
 * What a pushed tree may be (docs/api.md, "Projects"): checked on each tar entry as it arrives,
 * before any work proportional to it, and again by every server-side walk of a stored tree
 * (`selectFiles`'s `limits`). They bound what one entry or link can cost: a lookup of a path
 * costs the kernel work per component, so a deep tree of links is quadratic without them.
 */
export interface TreeLimits {
  /** Folders above an entry (a/b/c is 3 deep). */
  maxDepth: number;
  /** Bytes of an entry's relative name. */
  maxPathBytes: number;
  /** Symlinks in the whole tree. */
  maxSymlinks: number;
}

export const DEFAULT_TREE_LIMITS: TreeLimits = { maxDepth: 128, maxPathBytes: 1024, maxSymlinks: 10_000 };

/**
 * A push's tar may be at most this many times the gzip bytes it came from (`cycle server
 * --max-compression-ratio`), past the first COMPRESSION_ALLOWANCE_BYTES: a gzip bomb is
 * refused (413) before it fills the disk. Source trees compress 3-10x; 200x is zeros.
 */
export const DEFAULT_MAX_COMPRESSION_RATIO = 200;
export const COMPRESSION_ALLOWANCE_BYTES = 64 * 1024 * 1024;

/**
 * Disk the stored pushes (tarball and extracted tree, once per content) may take: per project
 * (`--project-quota`) and for the whole server (`--server-quota`). A push past either is a 507.
 */
export const DEFAULT_PROJECT_QUOTA_BYTES = 20 * 1024 ** 3;
export const DEFAULT_SERVER_QUOTA_BYTES = 100 * 1024 ** 3;
