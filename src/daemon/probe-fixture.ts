import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { parseNvidiaSmiTable, parseQueryCsv } from '../docker/gpu.js';
import { CycleError, ExitCode } from '../errors.js';
import type { Env } from '../ui/streams.js';
import { ExecNotFound, type Exec, type ExecResult } from '../util/exec.js';
import { parseMeminfo, parseProcStat, type MachineSources } from './probe.js';

/**
 * A TEST SEAM, read only by `cycle daemon run`: with `CYCLE_DAEMON_PROBE_FIXTURE=FILE` the
 * daemon's probe answers nvidia-smi from a recorded output (test/fixtures/nvidia/: a default
 * table `smi-*.txt`, a `--query-gpu` CSV with its header `query-csv-*`, or a failure
 * `smi-fail-*.txt`), assumes Docker hands GPUs to containers (the NVIDIA toolkit "is there"),
 * and reads the machine's non-job load from `CYCLE_DAEMON_PROBE_LOAD=FILE` (JSON, read at each
 * probe, idle when absent) instead of /proc and the desktop. So three daemons on one test
 * machine each have their own GPUs, and a test turns one busy by writing its load file.
 * Docker itself (docker info, gVisor) stays real: the daemon runs real containers.
 */
export const PROBE_FIXTURE_ENV = 'CYCLE_DAEMON_PROBE_FIXTURE';
export const PROBE_LOAD_ENV = 'CYCLE_DAEMON_PROBE_LOAD';

/** The non-job load a fixture machine reports (all optional: absent is idle). */
export const fixtureLoadSchema = z
  .object({
    cpu_percent: z.number().min(0).max(100).optional(),
    memory_used_gb: z.number().nonnegative().optional(),
    gpu_util_percent: z.number().min(0).max(100).optional(),
    vram_used_mib: z.number().nonnegative().optional(),
    /** Seconds since the last input of a desktop session; absent: no desktop session. */
    input_idle_s: z.number().nonnegative().optional(),
  })
  .strict();
export type FixtureLoad = z.infer<typeof fixtureLoadSchema>;

interface FixtureGpu {
  index: number;
  name: string;
  memoryTotalMib: number | undefined;
  uuid: string | undefined;
  driver: string | undefined;
}

type Fixture = { kind: 'table'; text: string; gpus: FixtureGpu[] } | { kind: 'csv'; gpus: FixtureGpu[] } | { kind: 'failure'; text: string };

/** Reads a recorded nvidia-smi output into what the fake nvidia-smi answers. */
export function parseFixture(text: string): Fixture {
  const table = parseNvidiaSmiTable(text);
  if (table) {
    const gpus: FixtureGpu[] = [];
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const row = /^\|\s+(\d+)\s+(.+?)\s+(On|Off|WDDM|TCC|MCDM)\s*\|\s*[0-9A-Fa-f]{4,8}:/.exec(lines[i]!);
      if (!row) continue;
      const memory = /(\d+)MiB\s*\/\s*(\d+)MiB/.exec(lines[i + 1] ?? '');
      gpus.push({
        index: Number(row[1]),
        name: row[2]!.trim(),
        memoryTotalMib: memory ? Number(memory[2]) : undefined,
        uuid: undefined,
        driver: table.driverVersion,
      });
    }
    return { kind: 'table', text, gpus };
  }
  const first = text.split('\n')[0] ?? '';
  if (first.includes(',') && /\bindex\b/.test(first) && /\bname\b/.test(first)) {
    const gpus = parseQueryCsv(text).map((row) => ({
      index: Number(row.index),
      name: row.name ?? '',
      memoryTotalMib: Number.parseInt(row['memory.total'] ?? '', 10) || undefined,
      uuid: row.uuid || undefined,
      driver: row.driver_version || undefined,
    }));
    return { kind: 'csv', gpus };
  }
  return { kind: 'failure', text };
}

/**
 * An Exec whose `nvidia-smi` answers from the fixture (the default table, `--query-gpu` with any
 * fields, `--query-compute-apps` with none) and whose NVIDIA toolkit probe succeeds when the
 * fixture has GPUs; every other program goes to `fallback`.
 */
export function fixtureExec(fixture: Fixture, load: () => Promise<FixtureLoad>, fallback: Exec): Exec {
  const ok = (stdout: string): ExecResult => ({ exitCode: 0, stdout, stderr: '' });
  return async (file, args, options) => {
    if (file === 'nvidia-container-runtime-hook' && fixture.kind !== 'failure') return ok('Usage: nvidia-container-runtime-hook\n');
    if (file !== 'nvidia-smi') return fallback(file, args, options);
    if (fixture.kind === 'failure') {
      if (/command not found/i.test(fixture.text)) throw new ExecNotFound('nvidia-smi');
      return { exitCode: 9, stdout: fixture.text, stderr: '' };
    }
    const query = args.find((a) => a.startsWith('--query-gpu='));
    if (query) {
      const current = await load();
      const fields = query.slice('--query-gpu='.length).split(',');
      const cell = (gpu: FixtureGpu, field: string): string => {
        switch (field) {
          case 'index':
            return String(gpu.index);
          case 'name':
            return gpu.name;
          case 'memory.total':
            return gpu.memoryTotalMib === undefined ? '[N/A]' : String(gpu.memoryTotalMib);
          case 'uuid':
            return gpu.uuid ?? `GPU-fixture-${gpu.index}`;
          case 'driver_version':
            return gpu.driver ?? '[N/A]';
          case 'utilization.gpu':
            return String(current.gpu_util_percent ?? 0);
          case 'memory.used':
            return String(current.vram_used_mib ?? 0);
          default:
            return '[N/A]';
        }
      };
      return ok(fixture.gpus.map((gpu) => `${fields.map((f) => cell(gpu, f)).join(', ')}\n`).join(''));
    }
    if (args.some((a) => a.startsWith('--query-compute-apps='))) return ok('');
    if (args.length === 0 && fixture.kind === 'table') return ok(fixture.text);
    return { exitCode: 2, stdout: '', stderr: `the probe fixture (${PROBE_FIXTURE_ENV}) has no answer for nvidia-smi ${args.join(' ')}\n` };
  };
}

/**
 * Machine sources for a fixture machine: nvidia-smi from the fixture, CPU, memory and desktop
 * input from the load (idle when it says nothing), Docker and disk from `base`. Job groups read
 * as gone: the load is already the non-job load.
 */
export function fixtureMachineSources(fixtureText: string, base: MachineSources, load: () => Promise<FixtureLoad> = async () => ({})): MachineSources {
  const fixture = parseFixture(fixtureText);
  let ticks = 0;
  let busyTicks = 0;
  return {
    ...base,
    exec: fixtureExec(fixture, load, base.exec),
    readCgroupFile: async () => undefined,
    readProcFile: async (name) => {
      const real = await base.readProcFile(name);
      if (name === 'meminfo') {
        const memory = parseMeminfo(real);
        const total = memory?.totalBytes ?? 64 * 1024 ** 3;
        const used = Math.min(total, ((await load()).memory_used_gb ?? 0) * 1024 ** 3);
        return `MemTotal: ${Math.round(total / 1024)} kB\nMemAvailable: ${Math.round((total - used) / 1024)} kB\n`;
      }
      // /proc/stat: counters that move by 10 000 ticks per reading, cpu_percent of them busy.
      const { cpus } = parseProcStat(real);
      ticks += 10_000;
      busyTicks += Math.round(((await load()).cpu_percent ?? 0) * 100);
      const idle = ticks - busyTicks;
      const perCpu = Array.from({ length: cpus }, (_, i) => `cpu${i} 0 0 0 0 0 0 0 0 0 0`).join('\n');
      return `cpu  ${busyTicks} 0 0 ${idle} 0 0 0 0 0 0\n${perCpu}\n`;
    },
    desktopIdleMs: async () => {
      const seconds = (await load()).input_idle_s;
      return seconds === undefined ? undefined : seconds * 1000;
    },
  };
}

/** Reads a fixture load file (re-read at each probe, so a test can change it while the daemon runs). */
export function fixtureLoadFile(file: string | undefined): () => Promise<FixtureLoad> {
  return async () => {
    if (!file) return {};
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch {
      return {};
    }
    let parsed;
    try {
      parsed = fixtureLoadSchema.safeParse(JSON.parse(text));
    } catch {
      parsed = undefined;
    }
    if (!parsed?.success)
      throw new CycleError({
        message: `${PROBE_LOAD_ENV}=${file}: expected JSON like {"cpu_percent": 37, "memory_used_gb": 2, "gpu_util_percent": 0, "vram_used_mib": 0, "input_idle_s": 600}`,
        exitCode: ExitCode.usage,
      });
    return parsed.data;
  };
}

/**
 * `cycle daemon run`'s sources: the real ones, or a fixture machine's when the test seam
 * `CYCLE_DAEMON_PROBE_FIXTURE` is set (a missing fixture file is a usage error naming it).
 */
export async function daemonMachineSources(env: Env, real: MachineSources): Promise<MachineSources> {
  const file = env[PROBE_FIXTURE_ENV];
  if (!file) return real;
  let text: string;
  try {
    text = await fs.readFile(path.resolve(file), 'utf8');
  } catch (error) {
    throw new CycleError({
      message: `${PROBE_FIXTURE_ENV}=${file}: cannot read the nvidia-smi fixture (${error instanceof Error ? error.message : String(error)})`,
      hint: `this variable is a test seam: unset it to probe the real machine`,
      exitCode: ExitCode.usage,
    });
  }
  return fixtureMachineSources(text, real, fixtureLoadFile(env[PROBE_LOAD_ENV]));
}
