import type { MachineInventory } from '../../api/machines.js';
import type { JobRequest } from '../../api/schemas.js';
import { compareVersions } from '../../docker/cuda-drivers.js';
import type { WorkerOffer } from './lease.js';

/**
 * Placement (platform-facts.md §A): which worker may run a task. A machine is offered only tasks
 * it can run: `[job].cuda` as a minimum against its driver's CUDA, `profile: "gpu"` /
 * `requirements.gpu` as whole GPUs of the task's own, `requirements` cpu/memory/storage as
 * minimums against its inventory, `"sandbox": "gvisor"` only where Docker has gVisor. The
 * server's own in-process worker is placed by its GPU probe alone, as before machines existed
 * (it runs a gVisor task unsandboxed with a warning, and has no inventory to hold requirements to).
 * Pure functions: the queue calls them synchronously while it picks.
 */

/** What a project revision's manifest asks of the worker: cached by the queue per (project, revision). */
export interface ManifestNeeds {
  cuda?: string;
  gvisor: boolean;
}

/** What every task of a job needs of the worker that runs it. */
export interface TaskNeeds {
  /** Whole GPUs of its own (0: it runs without the GPU). */
  gpus: number;
  cuda?: string;
  cpus?: number;
  memoryBytes?: number;
  diskBytes?: number;
  gvisor: boolean;
}

/** `memory_gb` and `storage_gb` count GiB, as the task container's limits do (docs/api.md, "Jobs"). */
const GIB = 1024 ** 3;

export function taskNeeds(request: Pick<JobRequest, 'profile' | 'requirements'>, manifest: ManifestNeeds): TaskNeeds {
  const asked = request.requirements?.gpu ?? 0;
  const wantsGpu = asked > 0 || request.profile === 'gpu' || manifest.cuda !== undefined;
  const requirements = request.requirements;
  return {
    gpus: wantsGpu ? Math.max(1, asked) : 0,
    ...(manifest.cuda !== undefined ? { cuda: manifest.cuda } : {}),
    ...(requirements?.cpu !== undefined ? { cpus: requirements.cpu } : {}),
    ...(requirements?.memory_gb !== undefined ? { memoryBytes: requirements.memory_gb * GIB } : {}),
    ...(requirements?.storage_gb !== undefined ? { diskBytes: requirements.storage_gb * GIB } : {}),
    gvisor: manifest.gvisor,
  };
}

/** A worker a task may go to: an enrolled machine (by its inventory) or the server's own worker (by its GPU probe). */
export type Candidate = { name: string; local: false; inventory: MachineInventory } | { name: string; local: true; gpu: WorkerOffer['gpu'] };

/** The name the server's own worker goes by in placement reasons. */
export const LOCAL_CANDIDATE_NAME = 'this server';

export function candidateOf(offer: WorkerOffer): Candidate {
  return offer.machine
    ? { name: offer.machine.name, local: false, inventory: offer.machine.inventory }
    : { name: LOCAL_CANDIDATE_NAME, local: true, gpu: offer.gpu };
}

function hasGpu(c: Candidate): boolean {
  return c.local ? c.gpu?.ok === true : c.inventory.gpus.length > 0 && !c.inventory.gpu_problem;
}

function cudaOf(c: Candidate): string | undefined {
  return c.local ? c.gpu?.cuda : c.inventory.cuda;
}

function gib(bytes: number): string {
  return `${(bytes / GIB).toFixed(1)} GiB`;
}

function plural(n: number, one: string): string {
  return `${n} ${one}${n === 1 ? '' : 's'}`;
}

interface Check {
  /** Why this candidate fails the check (undefined: it meets it, or the check does not apply). */
  fails(needs: TaskNeeds, c: Candidate): string | undefined;
  /** Every candidate left fails it: one line naming the best of them. */
  none(needs: TaskNeeds, failing: Candidate[]): string;
}

/** The best of `failing` by a number it has (the most CPUs, the newest CUDA …). */
function best(failing: Candidate[], value: (c: Candidate) => number | undefined): { name: string; value: number } | undefined {
  let top: { name: string; value: number } | undefined;
  for (const c of failing) {
    const v = value(c);
    if (v !== undefined && (top === undefined || v > top.value)) top = { name: c.name, value: v };
  }
  return top;
}

/** A minimum on a number of the machine's inventory (CPUs, memory, disk, GPU count); the server's own worker is not held to it. */
function minimum(wanted: (needs: TaskNeeds) => number | undefined, has: (inventory: MachineInventory) => number, what: (n: number) => string): Check {
  return {
    fails(needs, c) {
      const n = wanted(needs);
      if (n === undefined || n === 0 || c.local) return undefined;
      const got = has(c.inventory);
      return got >= n ? undefined : `needs ${what(n)}: ${c.name} has ${what(got)}`;
    },
    none(needs, failing) {
      const top = best(failing, (c) => (c.local ? undefined : has(c.inventory)));
      return `no machine has ${what(wanted(needs) ?? 0)}${top ? `; best: ${top.name} with ${what(top.value)}` : ''}`;
    },
  };
}

/** In order: the first check the whole pool fails is the one a waiting task's reason names. */
const CHECKS: Check[] = [
  {
    fails: (needs, c) =>
      needs.gvisor && !c.local && !c.inventory.gvisor ? `"sandbox": "gvisor" needs gVisor (runsc) in Docker: ${c.name} has none` : undefined,
    none: () => 'no machine has gVisor (runsc) in Docker for "sandbox": "gvisor"',
  },
  {
    fails(needs, c) {
      if (needs.gpus === 0 || hasGpu(c)) return undefined;
      const why = c.local ? (c.gpu?.reason ?? 'no GPU reported') : c.inventory.gpu_problem;
      return `the task needs a GPU: ${c.name} has none${why ? ` (${why})` : ''}`;
    },
    none: (_needs, failing) => {
      const local = failing.find((c) => c.local);
      const why = local?.local ? ` (${LOCAL_CANDIDATE_NAME}: ${local.gpu?.reason ?? 'no GPU reported'})` : '';
      return `no machine has a GPU for a task that needs one${why}`;
    },
  },
  {
    fails(needs, c) {
      const cuda = cudaOf(c);
      // A driver that does not say which CUDA it supports is not held to the minimum (as before machines).
      if (!needs.cuda || needs.gpus === 0 || !cuda || compareVersions(cuda, needs.cuda) >= 0) return undefined;
      return `[job].cuda = "${needs.cuda}" needs a newer driver: ${c.name} supports CUDA ${cuda}`;
    },
    none(needs, failing) {
      let top: Candidate | undefined;
      for (const c of failing) {
        const cuda = cudaOf(c);
        const topCuda = top && cudaOf(top);
        if (cuda && (!topCuda || compareVersions(cuda, topCuda) > 0)) top = c;
      }
      return `no machine supports CUDA ${needs.cuda}${top ? `; best: ${top.name} with ${cudaOf(top)}` : ''}`;
    },
  },
  minimum(
    (needs) => (needs.gpus > 1 ? needs.gpus : undefined),
    (inventory) => inventory.gpus.length,
    (n) => plural(n, 'GPU'),
  ),
  minimum(
    (needs) => needs.cpus,
    (inventory) => inventory.cpus,
    (n) => plural(n, 'CPU'),
  ),
  minimum(
    (needs) => needs.memoryBytes,
    (inventory) => inventory.memory_bytes,
    (n) => `${gib(n)} of memory`,
  ),
  minimum(
    (needs) => needs.diskBytes,
    (inventory) => inventory.free_disk_bytes,
    (n) => `${gib(n)} of free disk`,
  ),
];

/** Why this worker can never run the task (undefined: it can, once it has room). */
export function unfit(needs: TaskNeeds, candidate: Candidate): string | undefined {
  for (const check of CHECKS) {
    const why = check.fails(needs, candidate);
    if (why) return why;
  }
  return undefined;
}

/**
 * Why no worker of the pool can run the task: the first need that none meets, with the best
 * candidate for it ("no machine supports CUDA 13.0; best: gpu-b with 12.4"). Undefined when one can.
 */
export function noCandidateReason(needs: TaskNeeds, candidates: Candidate[]): string | undefined {
  if (candidates.length === 0)
    return 'no machine is enrolled and this server runs no worker: enrol one (cycle machine token create, then cycle daemon run on it)';
  let left = candidates;
  for (const check of CHECKS) {
    const passing = left.filter((c) => !check.fails(needs, c));
    if (passing.length === 0) return check.none(needs, left);
    left = passing;
  }
  return undefined;
}

/**
 * Whole GPUs of a machine for a task: the lowest-numbered ones no other lease on it holds.
 * Undefined when not enough are free now (the task waits for them).
 */
export function pickGpus(needs: TaskNeeds, inventory: MachineInventory, inUse: ReadonlySet<number>): number[] | undefined {
  if (needs.gpus === 0) return [];
  const free = inventory.gpus.map((g) => g.index).filter((index) => !inUse.has(index));
  return free.length >= needs.gpus ? free.sort((a, b) => a - b).slice(0, needs.gpus) : undefined;
}
