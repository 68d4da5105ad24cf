import os from 'node:os';
import type { Confinement, DockerDriver } from '../docker/driver.js';
import { CycleError, ExitCode } from '../errors.js';
import type { Env } from '../ui/streams.js';
import { parseByteSize } from '../util/size.js';
import { formatBytes } from '../ui/ui.js';

/** The platforms' limit on processes in a job container. */
export const JOB_PIDS_LIMIT = 4096;
/** The platforms' memory limit: this share of the host's RAM. */
export const JOB_MEMORY_SHARE = 0.9;
/** The Docker runtime name gVisor is registered under (scripts/setup.sh). */
export const GVISOR_RUNTIME = 'runsc';
/**
 * Capabilities a job keeps (Docker's default set less MKNOD, NET_RAW, SETFCAP, SETPCAP,
 * SYS_CHROOT, AUDIT_WRITE): enough for root in the job to install packages (apt drops to its
 * _apt user, dpkg sets owners and modes), own its files and signal its processes.
 */
export const JOB_CAPABILITIES = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'NET_BIND_SERVICE'];
/**
 * Capabilities the reclaim helper keeps (reclaimOutputs, task.ts): CHOWN to give files back,
 * DAC_READ_SEARCH to walk folders the job left unreadable (0700, owned by another uid).
 * Checked on runc and gVisor: chown -R of another uid's files needs both and nothing more
 * (not DAC_OVERRIDE, which also grants writes, nor FOWNER).
 */
export const RECLAIM_CAPABILITIES = ['CHOWN', 'DAC_READ_SEARCH'];
/** Processes for the reclaim helper: one chown, plus gVisor's own threads (it fails to start under ~40 here). */
export const RECLAIM_PIDS_LIMIT = 128;
/** Memory for the reclaim helper (a chown -R, plus gVisor's sentry when the job used it). */
export const RECLAIM_MEMORY_BYTES = 256 * 2 ** 20;
export const GVISOR_INSTALL_HINT =
  'install gVisor and register it with Docker: `bash scripts/setup.sh` does both (apt-get install runsc, then a "runsc" runtime in /etc/docker/daemon.json; see docs/computalot.md)';

export interface JobContainerInput {
  /** The manifest's `runtime.sandbox` (computalot.project.json). */
  sandbox?: 'gvisor' | undefined;
  /** A job request's requirements (the server): applied as limits, within the host's. */
  requirements?: { cpu?: number | undefined; memory_gb?: number | undefined } | null | undefined;
  /** `project test --skip-limits`: no memory, process or CPU limits (the lock-down stays). */
  skipLimits: boolean;
  /** Whether Docker has the gVisor runtime; asked only when the sandbox is (docker info costs a process). */
  gvisorRegistered: boolean;
  env: Env;
  host?: { memoryBytes: number; cpus: number };
}

export interface JobContainer {
  confinement: Confinement;
  /** `none` unless CYCLE_DOCKER_NETWORK names one. */
  network: string;
  /** What the user must hear (a sandbox asked for and not there). */
  warnings: string[];
}

/**
 * A job container's lock-down and limits, the same for `project test` and `cycle server`: no
 * new privileges, capabilities dropped to JOB_CAPABILITIES, no network unless
 * CYCLE_DOCKER_NETWORK names one, 90% of the host's RAM (or CYCLE_MEMORY_LIMIT, or the job's
 * `memory_gb` when smaller), 4096 processes, the job's `cpu` as a CPU limit, and gVisor when
 * the manifest asks for it and Docker has it.
 */
export function jobContainer(input: JobContainerInput): JobContainer {
  const host = input.host ?? { memoryBytes: os.totalmem(), cpus: os.availableParallelism() };
  const warnings: string[] = [];
  const confinement: Confinement = { noNewPrivileges: true, capDrop: ['ALL'], capAdd: [...JOB_CAPABILITIES] };
  if (input.sandbox === 'gvisor') {
    if (input.gvisorRegistered) confinement.runtime = GVISOR_RUNTIME;
    else
      warnings.push(
        `the manifest asks for "sandbox": "gvisor" but Docker has no "${GVISOR_RUNTIME}" runtime: the job runs unsandboxed (fix: ${GVISOR_INSTALL_HINT})`,
      );
  }
  if (!input.skipLimits) {
    const hostLimit = memoryLimitSetting(input.env) ?? Math.floor(host.memoryBytes * JOB_MEMORY_SHARE);
    const asked = input.requirements?.memory_gb;
    confinement.memoryBytes = asked !== undefined ? Math.min(hostLimit, Math.round(asked * 2 ** 30)) : hostLimit;
    confinement.pidsLimit = JOB_PIDS_LIMIT;
    const cpus = input.requirements?.cpu;
    // Docker refuses more CPUs than the host has.
    if (cpus !== undefined) confinement.nanoCpus = Math.round(Math.min(cpus, host.cpus) * 1e9);
  }
  return { confinement, network: input.env.CYCLE_DOCKER_NETWORK || 'none', warnings };
}

/**
 * The reclaim helper's lock-down: it runs as root in the job's image (the job's own chown), so
 * it gets the least that works, with no network, and the job's runtime (gVisor when the job had it).
 */
export function reclaimConfinement(runtime: string | undefined): Confinement {
  return {
    noNewPrivileges: true,
    capDrop: ['ALL'],
    capAdd: [...RECLAIM_CAPABILITIES],
    ...(runtime !== undefined ? { runtime } : {}),
    memoryBytes: RECLAIM_MEMORY_BYTES,
    pidsLimit: RECLAIM_PIDS_LIMIT,
  };
}

/** CYCLE_MEMORY_LIMIT: a job container memory limit for tests and operators (`512m`, `2g`, `1.5GiB`, bytes). */
export function memoryLimitSetting(env: Env): number | undefined {
  const text = env.CYCLE_MEMORY_LIMIT?.trim();
  if (!text) return undefined;
  const bytes = parseByteSize(text);
  // Docker's own floor is 6 MiB.
  if (bytes === undefined || bytes < 6 * 2 ** 20) {
    throw new CycleError({
      message: `CYCLE_MEMORY_LIMIT=${JSON.stringify(env.CYCLE_MEMORY_LIMIT)}: expected a memory size of at least 6m, such as 512m, 2g or 1.5GiB`,
      hint: 'set CYCLE_MEMORY_LIMIT to a size, or unset it for 90% of the host RAM',
      exitCode: ExitCode.usage,
    });
  }
  return bytes;
}

/** What a task killed for memory failed with (the same words in `project test` and on the server). */
export function outOfMemoryReason(memoryBytes: number | undefined): string {
  return `ran out of memory (${memoryBytes !== undefined ? `limit ${formatBytes(memoryBytes)}` : 'no memory limit: the host ran out'}): the kernel killed it`;
}

/** Whether Docker has gVisor registered (a `docker info`: ask only when a manifest wants the sandbox). */
export async function gvisorRegistered(docker: DockerDriver): Promise<boolean> {
  return (await docker.info()).runtimes.includes(GVISOR_RUNTIME);
}
