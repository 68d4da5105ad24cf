import { z } from 'zod';

/**
 * The machine pool's contract (issue 20), shared by `cycle server` (the queue and its machine
 * routes), `cycle daemon run` (a worker on another machine) and the CLI (`cycle machine ...`).
 * Wire shapes are snake_case JSON like the rest of the API; a reader keeps fields it does not know.
 */

export const MACHINE_STATES = ['idle', 'busy', 'paused', 'draining', 'offline'] as const;
export type MachineState = (typeof MACHINE_STATES)[number];

/** A machine's name: what `cycle daemon run --name` takes and `cycle machine show NAME` finds. */
export const machineName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'a machine name is 1-63 characters: lowercase letters, digits, ".", "_" and "-", starting with a letter or digit');

const count = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** One GPU of a machine, as its probe found it (nvidia-smi). */
export const machineGpuSchema = z
  .object({
    index: z.number().int().nonnegative().max(1024),
    name: z.string().max(256),
    memory_mib: count,
    uuid: z.string().max(128).optional(),
  })
  .passthrough();
export type MachineGpu = z.infer<typeof machineGpuSchema>;

/** What a machine has: sent by its daemon when it enrols and with every heartbeat. */
export const machineInventorySchema = z
  .object({
    cpus: count,
    memory_bytes: count,
    free_disk_bytes: count,
    gpus: z.array(machineGpuSchema).max(256),
    /** The NVIDIA driver's version ("550.144.03"); absent without a driver. */
    driver: z.string().max(64).optional(),
    /** The newest CUDA the driver supports ("12.4"). */
    cuda: z.string().max(32).optional(),
    /** Why the machine runs no GPU task though it may have GPUs (no driver, no nvidia runtime in Docker). */
    gpu_problem: z.string().max(1024).optional(),
    docker: z.boolean(),
    gvisor: z.boolean(),
    /** The daemon's `cycle` version. */
    version: z.string().max(64).optional(),
  })
  .passthrough();
export type MachineInventory = z.infer<typeof machineInventorySchema>;

/**
 * Whether the machine may take work now (platform-facts.md §A: idle = not paused, non-job CPU
 * ≤ 5 %, non-job RAM ≤ 16 GB, GPU SM ≤ 5 %, VRAM ≤ 2 GB, no input for 5 minutes).
 */
export const machineActivitySchema = z
  .object({
    /** Meets the idle rule (ignoring pause): no non-job load. */
    idle: z.boolean(),
    /** Why it is not idle ("non-job CPU 37 % > 5 %"), empty when idle. */
    busy_reasons: z.array(z.string().max(512)).max(32),
    /** ISO time a `cycle daemon pause` ends; null when not paused. */
    paused_until: z.string().max(64).nullable(),
    /** `cycle daemon forbid-busy-assign`: a busy machine takes no task, and gives back what it runs. */
    forbid_busy_assign: z.boolean(),
  })
  .passthrough();
export type MachineActivity = z.infer<typeof machineActivitySchema>;

/** A task a machine runs now. */
export const machineTaskSchema = z.object({ job_id: z.string(), task_id: z.string(), started_at: z.string().nullable() }).passthrough();

/** `GET /api/v1/machines` (a list under `machines`) and `GET /api/v1/machines/:name`: what `cycle machine list|show` print. */
export const machineSchema = z
  .object({
    name: z.string(),
    state: z.string(),
    slots: count,
    running: z.array(machineTaskSchema),
    inventory: machineInventorySchema.nullable(),
    activity: machineActivitySchema.nullable(),
    last_heartbeat_at: z.string().nullable(),
    enrolled_at: z.string(),
    /** Why queued tasks are not placed on it (one line per reason, with a job id), at most a few. */
    not_placed: z.array(z.object({ job_id: z.string(), reason: z.string() }).passthrough()).optional(),
  })
  .passthrough();
export type Machine = z.infer<typeof machineSchema>;

/** `POST /api/v1/machines/tokens`: the token, shown once (the server keeps its hash only). */
export const machineTokenSchema = z.object({ token: z.string().min(1), token_id: z.string().optional(), name: z.string().nullable().optional() }).passthrough();
export type MachineToken = z.infer<typeof machineTokenSchema>;

/**
 * `GET /api/v1/jobs/:id/placement` (a cycle-server extension): why a job's queued tasks wait.
 * `reason` null: nothing holds them but free room on a worker that can run them.
 */
export const jobPlacementSchema = z
  .object({
    job_id: z.string().optional(),
    queued: z.number().optional(),
    reason: z.string().nullable().optional(),
    workers: z.array(z.object({ name: z.string(), reason: z.string().nullable() }).passthrough()).optional(),
  })
  .passthrough();
export type JobPlacementView = z.infer<typeof jobPlacementSchema>;
