import fs from 'node:fs/promises';
import path from 'node:path';
import type { MachineActivity, MachineGpu, MachineInventory } from '../api/machines.js';
import type { DockerInfo, DockerDriver } from '../docker/driver.js';
import { classifyNvidiaSmiFailure, dockerGpuSupport, parseQueryCsv, probeNvidia, NO_CONTAINER_RUNTIME_HINT } from '../docker/gpu.js';
import { cudaForDriver } from '../docker/cuda-drivers.js';
import { GVISOR_RUNTIME } from '../runner/limits.js';
import type { Env } from '../ui/streams.js';
import { ExecNotFound, type Exec } from '../util/exec.js';
import type { ControlState } from './control.js';
import { IDLE_THRESHOLDS, judgeIdle, type IdleThresholds, type MachineLoad } from './idle.js';

/**
 * Everything the machine probe reads, behind one interface: tests drive the probe with fakes
 * (test/helpers/machine-sources.ts), `realMachineSources` reads this machine, and
 * `fixtureMachineSources` (probe-fixture.ts) answers nvidia-smi from a recorded output.
 */
export interface MachineSources {
  /** A file under /proc: `stat` or `meminfo`. */
  readProcFile(name: 'stat' | 'meminfo'): Promise<string>;
  /** A file of a cgroup v2 group (path relative to /sys/fs/cgroup); undefined when the group is gone. */
  readCgroupFile(group: string, file: 'cpu.stat' | 'memory.current' | 'memory.stat' | 'cgroup.procs'): Promise<string | undefined>;
  /** Runs nvidia-smi (and the NVIDIA container toolkit's probe). */
  exec: Exec;
  /** Docker's facts; throws when Docker is missing or down. */
  dockerInfo(): Promise<DockerInfo>;
  /** Bytes free for an unprivileged user on the file system holding `dir` (statfs). */
  freeDiskBytes(dir: string): Promise<number>;
  /** Milliseconds since the desktop session's last keyboard/mouse input; undefined without a desktop session. */
  desktopIdleMs(): Promise<number | undefined>;
  /** Waits (the first CPU sample needs two readings of /proc/stat). */
  sleep(ms: number): Promise<void>;
}

export interface MachineProbeOptions {
  sources: MachineSources;
  /** The daemon's data folder: its file system's free space is the machine's free disk. */
  dataDir: string;
  /** The owner's control state (pause, forbid-busy-assign), copied into the activity. */
  control: () => ControlState;
  /**
   * The cgroup v2 groups of the daemon's running job containers (relative to /sys/fs/cgroup;
   * `dockerContainerCgroups(id)` names both Docker layouts, missing groups are skipped): their
   * CPU and memory are the jobs', not the machine's load.
   */
  jobCgroups?: () => readonly string[] | Promise<readonly string[]>;
  /** GPUs given to the daemon's running tasks (whole GPUs): their SM and VRAM are the jobs'. */
  jobGpus?: () => readonly number[];
  /** The daemon's `cycle` version, put in the inventory. */
  version?: string;
  /** The first probe samples CPU over this window (later ones measure since the previous probe). */
  firstSampleMs?: number;
  /** How long the slow part of the inventory (nvidia-smi's GPU list, Docker) is kept (default a minute). */
  inventoryMaxAgeMs?: number;
  /** Wall-clock milliseconds (inventory age). */
  now?: () => number;
  thresholds?: IdleThresholds;
}

export interface MachineProbeResult {
  inventory: MachineInventory;
  activity: MachineActivity;
  /** The numbers behind `activity` (for the daemon's log and tests). */
  load: MachineLoad;
}

export type MachineProbe = () => Promise<MachineProbeResult>;

/** /proc/stat counts in USER_HZ ticks, 100 a second on every Linux architecture cycle runs on. */
const USER_HZ = 100;

interface CpuSample {
  /** All ticks and idle ticks (idle + iowait), summed over CPUs. */
  total: number;
  idle: number;
  cpus: number;
  /** Each job group's `usage_usec` at this time. */
  jobUsec: Map<string, number>;
}

/** The cgroup v2 groups a Docker container may have: the systemd cgroup driver's and cgroupfs's. */
export function dockerContainerCgroups(containerId: string): string[] {
  return [`system.slice/docker-${containerId}.scope`, `docker/${containerId}`];
}

/**
 * The machine probe `cycle daemon run` calls at each heartbeat: what the machine has
 * (inventory) and whether it is idle (activity). It keeps the previous CPU sample, so non-job CPU
 * is the average since the previous call (the first call samples over `firstSampleMs`).
 */
export function createMachineProbe(options: MachineProbeOptions): MachineProbe {
  const { sources } = options;
  const now = options.now ?? Date.now;
  let previous: CpuSample | undefined;
  let cached: { at: number; value: Promise<StaticInventory> } | undefined;
  return async () => {
    const groups = [...((await options.jobCgroups?.()) ?? [])];
    if (!cached || now() - cached.at > (options.inventoryMaxAgeMs ?? 60_000)) {
      const value = probeStaticInventory(sources);
      cached = { at: now(), value };
      value.catch(() => {
        cached = undefined;
      });
    }
    let before = previous;
    if (!before) {
      before = await cpuSample(sources, groups);
      await sources.sleep(options.firstSampleMs ?? 1000);
    }
    const after = await cpuSample(sources, groups);
    previous = after;
    const [fixed, meminfo, freeDisk, jobMemory, gpuLoad, inputIdleMs] = await Promise.all([
      cached.value,
      sources.readProcFile('meminfo').then(parseMeminfo),
      sources.freeDiskBytes(options.dataDir).catch(() => 0),
      jobMemoryBytes(sources, groups),
      measureGpuLoad(sources, groups, options.jobGpus?.() ?? []),
      sources.desktopIdleMs().catch(() => undefined),
    ]);
    const load: MachineLoad = {
      cpuPercent: nonJobCpuPercent(before, after),
      ...(meminfo ? { memoryBytes: Math.max(0, meminfo.totalBytes - meminfo.availableBytes - jobMemory) } : {}),
      gpus: gpuLoad,
      ...(inputIdleMs !== undefined ? { inputIdleMs } : {}),
    };
    const control = options.control();
    const verdict = judgeIdle(load, options.thresholds ?? IDLE_THRESHOLDS);
    const inventory: MachineInventory = {
      cpus: after.cpus,
      memory_bytes: meminfo?.totalBytes ?? 0,
      free_disk_bytes: freeDisk,
      ...fixed,
      ...(options.version ? { version: options.version } : {}),
    };
    const activity: MachineActivity = { ...verdict, paused_until: control.paused_until, forbid_busy_assign: control.forbid_busy_assign };
    return { inventory, activity, load };
  };
}

type StaticInventory = Pick<MachineInventory, 'gpus' | 'driver' | 'cuda' | 'gpu_problem' | 'docker' | 'gvisor'>;

/** GPUs, driver, CUDA, Docker and gVisor: what changes only with a reboot or an install. */
export async function probeStaticInventory(sources: MachineSources): Promise<StaticInventory> {
  let info: DockerInfo | undefined;
  try {
    info = await sources.dockerInfo();
  } catch {
    info = undefined;
  }
  const gpu = await probeGpus(sources.exec);
  let problem = gpu.problem;
  if (!problem && gpu.gpus.length > 0) {
    if (!info) problem = 'Docker is not running here, so no task can run';
    else if (!(await dockerGpuSupport(info, sources.exec)))
      problem = `Docker has no NVIDIA container runtime, so containers get no GPU (fix: ${NO_CONTAINER_RUNTIME_HINT})`;
  }
  return {
    gpus: gpu.gpus,
    ...(gpu.driver ? { driver: gpu.driver } : {}),
    ...(gpu.cuda ? { cuda: gpu.cuda } : {}),
    ...(problem ? { gpu_problem: problem } : {}),
    docker: info !== undefined,
    gvisor: info?.runtimes.includes(GVISOR_RUNTIME) ?? false,
  };
}

export const GPU_QUERY_FIELDS = ['index', 'name', 'memory.total', 'uuid', 'driver_version'] as const;

/**
 * The GPUs by `nvidia-smi --query-gpu` (index, name, memory, uuid, driver) and the newest CUDA
 * the driver supports by the default table (the same probe as `project test` and `cycle doctor`;
 * from NVIDIA's driver table when the table says N/A or is missing). No nvidia-smi: no GPUs and
 * no problem (a CPU machine); a driver that fails: no GPUs, and the failure as `problem`.
 */
export async function probeGpus(exec: Exec): Promise<{ gpus: MachineGpu[]; driver?: string; cuda?: string; problem?: string }> {
  let query: { exitCode: number; stdout: string; stderr: string } | undefined;
  try {
    query = await exec('nvidia-smi', [`--query-gpu=${GPU_QUERY_FIELDS.join(',')}`, '--format=csv,noheader,nounits'], { timeoutMs: 20_000 });
  } catch (error) {
    if (error instanceof ExecNotFound) return { gpus: [] };
    throw error;
  }
  const table = await probeNvidia(exec);
  const rows = query.exitCode === 0 ? parseQueryCsv(query.stdout, [...GPU_QUERY_FIELDS]) : [];
  const gpus: MachineGpu[] = rows
    .filter((row) => /^\d+$/.test(row.index ?? ''))
    .map((row) => ({
      index: Number(row.index),
      name: row.name ?? '',
      memory_mib: numberIn(row['memory.total']) ?? 0,
      ...(row.uuid && /^GPU-/.test(row.uuid) ? { uuid: row.uuid } : {}),
    }));
  const queriedDriver = rows.map((row) => row.driver_version).find((v) => v && /^\d+(\.\d+)+$/.test(v));
  if (table.ok) {
    const report = table.report;
    const listed = gpus.length > 0 ? gpus : report.gpus.map((g) => ({ index: g.index, name: g.name, memory_mib: 0 }));
    const cuda = report.cudaVersion;
    return {
      gpus: listed,
      driver: report.driverVersion,
      ...(cuda ? { cuda } : {}),
      ...(cuda === undefined && listed.length > 0
        ? { problem: `cannot tell which CUDA version driver ${report.driverVersion} supports (nvidia-smi shows none)` }
        : {}),
    };
  }
  if (gpus.length > 0 && queriedDriver) {
    // The table failed to parse but the query answered: the driver's CUDA comes from NVIDIA's table.
    const cuda = cudaForDriver(queriedDriver);
    return { gpus, driver: queriedDriver, ...(cuda ? { cuda } : { problem: `cannot tell which CUDA version driver ${queriedDriver} supports` }) };
  }
  if (table.reason === 'not-installed') return { gpus: [] };
  const failure = query.exitCode !== 0 ? classifyNvidiaSmiFailure(`${query.stdout}\n${query.stderr}`) : table;
  return { gpus: [], problem: `nvidia-smi failed (${failure.reason}): ${failure.detail.split('\n')[0]}` };
}

/** "143771 MiB", "143771", "[N/A]" → 143771, 143771, undefined. */
function numberIn(cell: string | undefined): number | undefined {
  const match = /^\s*(\d+(?:\.\d+)?)/.exec(cell ?? '');
  return match ? Number(match[1]) : undefined;
}

/** The `cpu` line of /proc/stat: all ticks and idle ticks; and how many `cpuN` lines. */
export function parseProcStat(text: string): { total: number; idle: number; cpus: number } {
  let total = 0;
  let idle = 0;
  let cpus = 0;
  for (const line of text.split('\n')) {
    if (/^cpu\d+\s/.test(line)) cpus++;
    else if (/^cpu\s/.test(line)) {
      // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is inside user.
      const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
      total = fields.reduce((sum, n) => sum + (Number.isFinite(n) ? n : 0), 0);
      idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    }
  }
  return { total, idle, cpus: Math.max(cpus, 1) };
}

/** MemTotal and MemAvailable of /proc/meminfo, in bytes. */
export function parseMeminfo(text: string): { totalBytes: number; availableBytes: number } | undefined {
  const kib = (key: string): number | undefined => {
    const match = new RegExp(`^${key}:\\s+(\\d+)\\s*kB`, 'm').exec(text);
    return match ? Number(match[1]) * 1024 : undefined;
  };
  const totalBytes = kib('MemTotal');
  const availableBytes = kib('MemAvailable');
  return totalBytes === undefined || availableBytes === undefined ? undefined : { totalBytes, availableBytes };
}

async function cpuSample(sources: MachineSources, groups: readonly string[]): Promise<CpuSample> {
  const stat = parseProcStat(await sources.readProcFile('stat'));
  const jobUsec = new Map<string, number>();
  for (const group of groups) {
    const text = await sources.readCgroupFile(group, 'cpu.stat');
    const usec = text === undefined ? undefined : /^usage_usec\s+(\d+)/m.exec(text)?.[1];
    if (usec !== undefined) jobUsec.set(group, Number(usec));
  }
  return { ...stat, jobUsec };
}

/**
 * Busy CPU between two samples minus the job groups' CPU in the same window, in percent of the
 * machine. A group that appeared in between counts all its usage (its start is inside the
 * window, near enough); one that ended in between counts as load for that window.
 */
export function nonJobCpuPercent(before: CpuSample, after: CpuSample): number {
  const ticks = after.total - before.total;
  if (ticks <= 0) return 0;
  const busyTicks = ticks - (after.idle - before.idle);
  let jobUsec = 0;
  for (const [group, usec] of after.jobUsec) jobUsec += Math.max(0, usec - (before.jobUsec.get(group) ?? 0));
  const windowUsec = (ticks / USER_HZ / after.cpus) * 1e6;
  const percent = (busyTicks / ticks) * 100 - (jobUsec / (windowUsec * after.cpus)) * 100;
  return Math.max(0, Math.min(100, percent));
}

/** The job groups' memory: `memory.current` less `inactive_file` (reclaimable cache), as `docker stats` counts it. */
async function jobMemoryBytes(sources: MachineSources, groups: readonly string[]): Promise<number> {
  let bytes = 0;
  for (const group of groups) {
    const current = Number((await sources.readCgroupFile(group, 'memory.current'))?.trim());
    if (!Number.isFinite(current)) continue;
    const stat = (await sources.readCgroupFile(group, 'memory.stat')) ?? '';
    const inactive = Number(/^inactive_file\s+(\d+)/m.exec(stat)?.[1] ?? 0);
    bytes += Math.max(0, current - inactive);
  }
  return bytes;
}

/**
 * Each GPU's SM use and VRAM, except the GPUs that are the daemon's jobs': those given to a
 * running task (`jobGpus`) and those where a process of a job group computes
 * (`--query-compute-apps` against the groups' `cgroup.procs`). GPU tasks get whole GPUs, so
 * everything on any other GPU is non-job load. No nvidia-smi, or one that fails: no GPU load.
 */
async function measureGpuLoad(sources: MachineSources, groups: readonly string[], jobGpus: readonly number[]): Promise<MachineLoad['gpus']> {
  let gpuAnswer;
  try {
    gpuAnswer = await sources.exec('nvidia-smi', ['--query-gpu=index,uuid,utilization.gpu,memory.used', '--format=csv,noheader,nounits'], {
      timeoutMs: 20_000,
    });
  } catch {
    return [];
  }
  if (gpuAnswer.exitCode !== 0) return [];
  const rows = parseQueryCsv(gpuAnswer.stdout, ['index', 'uuid', 'utilization.gpu', 'memory.used']).filter((row) => /^\d+$/.test(row.index ?? ''));
  const mine = new Set(jobGpus);
  if (groups.length > 0) {
    const pids = new Set<string>();
    for (const group of groups)
      for (const pid of ((await sources.readCgroupFile(group, 'cgroup.procs')) ?? '').split('\n')) if (pid.trim()) pids.add(pid.trim());
    const apps = await sources
      .exec('nvidia-smi', ['--query-compute-apps=gpu_uuid,pid,used_memory', '--format=csv,noheader,nounits'], { timeoutMs: 20_000 })
      .catch(() => undefined);
    if (apps?.exitCode === 0)
      for (const app of parseQueryCsv(apps.stdout, ['gpu_uuid', 'pid', 'used_memory'])) {
        const row = rows.find((r) => r.uuid === app.gpu_uuid);
        if (row && pids.has(app.pid ?? '')) mine.add(Number(row.index));
      }
  }
  return rows
    .filter((row) => !mine.has(Number(row.index)))
    .map((row) => {
      const util = numberIn(row['utilization.gpu']);
      const usedMib = numberIn(row['memory.used']);
      return {
        index: Number(row.index),
        ...(util !== undefined ? { utilPercent: util } : {}),
        ...(usedMib !== undefined ? { nonJobVramBytes: usedMib * 1024 ** 2 } : {}),
      };
    });
}

/** This machine's sources: /proc, /sys/fs/cgroup, the real nvidia-smi, Docker, statfs, the desktop session. */
export function realMachineSources(deps: { exec: Exec; docker: () => Promise<DockerDriver>; env: Env }): MachineSources {
  return {
    readProcFile: (name) => fs.readFile(`/proc/${name}`, 'utf8'),
    readCgroupFile: async (group, file) => {
      const normal = path.posix.normalize(`/${group}`);
      if (normal.includes('/../') || normal.endsWith('/..')) return undefined;
      try {
        return await fs.readFile(path.join('/sys/fs/cgroup', normal, file), 'utf8');
      } catch {
        return undefined;
      }
    },
    exec: deps.exec,
    dockerInfo: async () => (await deps.docker()).info(),
    freeDiskBytes: async (dir) => {
      const stat = await fs.statfs(dir);
      return stat.bavail * stat.bsize;
    },
    desktopIdleMs: () => desktopIdleMs(deps.exec, deps.env),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  };
}

const DESKTOP_SESSION_TYPES = new Set(['x11', 'wayland', 'mir']);

/**
 * The desktop's input idle time: `xprintidle` when DISPLAY is set (X11), else logind's
 * IdleHint/IdleSinceHint of the graphical sessions (`loginctl show-session`). A graphical session
 * that does not say it is idle counts as in use (0 ms). No graphical session: undefined (the
 * input rule is skipped, as on a server).
 */
export async function desktopIdleMs(exec: Exec, env: Env, now: () => number = Date.now): Promise<number | undefined> {
  const run = async (file: string, args: string[]): Promise<string | undefined> => {
    try {
      const result = await exec(file, args, { timeoutMs: 5000 });
      return result.exitCode === 0 ? result.stdout : undefined;
    } catch {
      return undefined;
    }
  };
  if (env.DISPLAY) {
    const out = (await run('xprintidle', []))?.trim();
    if (out && /^\d+$/.test(out)) return Number(out);
  }
  const list = await run('loginctl', ['list-sessions', '--no-legend']);
  if (list === undefined) return undefined;
  let least: number | undefined;
  for (const line of list.split('\n')) {
    const id = line.trim().split(/\s+/)[0];
    if (!id || !/^[\w-]+$/.test(id)) continue;
    const props = await run('loginctl', ['show-session', id, '-p', 'Type', '-p', 'Active', '-p', 'IdleHint', '-p', 'IdleSinceHint']);
    if (props === undefined) continue;
    const value = (key: string): string | undefined => new RegExp(`^${key}=(.*)$`, 'm').exec(props)?.[1]?.trim();
    if (!DESKTOP_SESSION_TYPES.has(value('Type') ?? '')) continue;
    const sinceUsec = Number(value('IdleSinceHint'));
    const idleMs = value('IdleHint') === 'yes' && sinceUsec > 0 ? Math.max(0, now() - sinceUsec / 1000) : 0;
    least = least === undefined ? idleMs : Math.min(least, idleMs);
  }
  return least;
}
