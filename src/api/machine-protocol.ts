import { z } from 'zod';
import { machineActivitySchema, machineInventorySchema, machineName } from './machines.js';

/**
 * The machine protocol (docs/api.md, "Machines: the daemon's protocol"): what `cycle daemon run`
 * and `cycle server` say to each other under `/api/v1/machine/...`, with a machine token. The
 * server checks every request with these (strict: a machine is as untrusted as a push); the
 * daemon checks the answers. Lease times travel as durations, never as either side's clock.
 */

/** The most a long poll for work waits before it answers with no lease. */
export const MAX_LEASE_WAIT_MS = 25_000;
/** The most output one report carries (the worker sends a few times a second). */
export const MAX_REPORT_OUTPUT_CHARS = 4 << 20;
/** A report's JSON body: the output above, JSON-escaped, and a progress value. */
export const MAX_REPORT_BYTES = 32 << 20;

export const heartbeatRequestSchema = z.strictObject({
  name: machineName,
  slots: z.number().int().min(1).max(256),
  inventory: machineInventorySchema,
  activity: machineActivitySchema,
});
export type HeartbeatRequest = z.infer<typeof heartbeatRequestSchema>;

export const heartbeatAnswerSchema = z
  .object({
    name: z.string(),
    lease_ms: z.number(),
    server_version: z.string(),
    /** The machine is drained (`cycle machine drain`); absent from an older server. */
    draining: z.boolean().optional(),
  })
  .passthrough();

export const leaseRequestSchema = z.strictObject({
  max: z.number().int().min(1).max(256),
  wait_ms: z
    .number()
    .int()
    .min(0)
    .max(10 * 60_000)
    .default(0),
});

/** A lease as a daemon receives it: the queue's Lease, its expiry as `expires_in_ms`. */
export const wireLeaseSchema = z
  .object({
    id: z.string().min(1).max(128),
    taskId: z.string().min(1).max(128),
    jobId: z.string().min(1).max(128),
    attempt: z.number().int(),
    expires_in_ms: z.number().nonnegative(),
    renewEveryMs: z.number().int().positive(),
    project: z.string(),
    revision: z.number().int(),
    kind: z.enum(['task', 'map', 'reduce']),
    index: z.number().int(),
    payload: z.record(z.string(), z.unknown()),
    downloads: z.array(z.object({ name: z.string(), artifactId: z.string(), fileName: z.string() })),
    runnerCommand: z.array(z.string()).optional(),
    timeoutS: z.number().optional(),
    requirements: z.record(z.string(), z.unknown()).optional(),
    gpus: z.boolean(),
  })
  .passthrough();
export type WireLease = z.infer<typeof wireLeaseSchema>;

export const leaseAnswerSchema = z.object({
  leases: z.array(wireLeaseSchema),
  /** Why the machine was offered nothing though it asked (drained, removed): it asks again later. */
  not_offered: z.string().optional(),
});

export const renewAnswerSchema = z.object({ expires_in_ms: z.number().nonnegative(), cancel: z.boolean() }).passthrough();

export const reportRequestSchema = z.strictObject({
  output: z.string().max(MAX_REPORT_OUTPUT_CHARS).optional(),
  progress: z.unknown().optional(),
  /** Every progress line since the last report, in order (the web page's curves), at most 1,000. */
  progress_points: z.array(z.unknown()).max(1000).optional(),
});

export const completeRequestSchema = z.strictObject({
  status: z.enum(['succeeded', 'failed', 'cancelled']),
  result: z.unknown().optional(),
  error: z
    .string()
    .max(64 * 1024)
    .optional(),
  exit_code: z.number().int().optional(),
  /** When the task reached each stage on the machine (ms since the epoch, the machine's clock): `cycle job tasks --timings`. */
  stages: z
    .strictObject({
      image_ready: z.number().nonnegative().optional(),
      created: z.number().nonnegative().optional(),
      started: z.number().nonnegative().optional(),
      exited: z.number().nonnegative().optional(),
      captured: z.number().nonnegative().optional(),
    })
    .optional(),
});

export const releaseRequestSchema = z.strictObject({
  reason: z.string().min(1).max(1024),
  /** The task never started here (a lease a poll brought while the machine paused): not counted as an attempt if nothing was reported on it. */
  unstarted: z.boolean().optional(),
});

/** A captured /artifacts file's place among the task's others, sent beside its bytes (query string). */
export const capturedQuerySchema = z.strictObject({
  path: z.string().min(1).max(4096),
  first_seen: z.coerce.number().int().nonnegative(),
  last_captured: z.coerce.number().int().nonnegative(),
  mtime_ns: z.string().regex(/^\d{1,30}$/),
  upload_key: z.coerce.number().refine(Number.isFinite, 'a finite number'),
});

/** `GET /api/v1/machine/tasks/:id/captured`: what a task captured so far (restored before it runs again). */
export const capturedListSchema = z.object({
  files: z.array(z.object({ id: z.string(), path: z.string(), size: z.number(), sha256: z.string() }).passthrough()),
});

export const revisionAnswerSchema = z.object({ content_hash: z.string().regex(/^[0-9a-f]{64}$/), format: z.enum(['cycleswap', 'computalot']) }).passthrough();

export const volumeAnswerSchema = z.object({
  name: z.string(),
  /** builtin/ volumes are the machine's own folder; an uploaded one is its files, by content. */
  builtin: z.boolean(),
  version: z.string().nullable(),
  files: z.array(z.object({ path: z.string(), sha256: z.string(), size: z.number() }).passthrough()),
});
