import fs from 'node:fs';
import path from 'node:path';
import type { DockerInfo } from '../../src/docker/driver.js';
import { fixtureMachineSources, type FixtureLoad } from '../../src/daemon/probe-fixture.js';
import type { MachineSources } from '../../src/daemon/probe.js';
import { ExecNotFound, type Exec } from '../../src/util/exec.js';

export const NVIDIA_FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'nvidia');

/** A recorded nvidia-smi output of test/fixtures/nvidia/ (SOURCES.md there says where each comes from). */
export function nvidiaFixture(name: string): string {
  return fs.readFileSync(path.join(NVIDIA_FIXTURES, name), 'utf8');
}

export const fakeDockerInfo = (runtimes: string[] = ['runc', 'runsc']): DockerInfo =>
  ({
    serverVersion: '27.0.0',
    clientVersion: '27.0.0',
    builder: 'buildkit',
    runtimes,
    cdiSpecDirs: [],
    operatingSystem: 'Debian',
    architecture: 'x86_64',
    transport: 'the docker CLI',
  }) as DockerInfo;

/** A machine with no NVIDIA tools, 4 CPUs, 64 GiB, idle, Docker with gVisor; every part can be replaced. */
export function fakeMachineSources(overrides: Partial<MachineSources> = {}): MachineSources & { sleeps: number[] } {
  const sleeps: number[] = [];
  const exec: Exec = async (file) => {
    throw new ExecNotFound(file);
  };
  return {
    sleeps,
    readProcFile: async (name) =>
      name === 'meminfo' ? `MemTotal: ${64 * 1024 * 1024} kB\nMemFree: 1 kB\nMemAvailable: ${60 * 1024 * 1024} kB\n` : procStat({ busy: 0, idle: 0, cpus: 4 }),
    readCgroupFile: async () => undefined,
    exec,
    dockerInfo: async () => fakeDockerInfo(),
    freeDiskBytes: async () => 500 * 1024 ** 3,
    desktopIdleMs: async () => undefined,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    ...overrides,
  };
}

/** A /proc/stat text with these totals on the `cpu` line (busy as user time). */
export function procStat({ busy, idle, cpus }: { busy: number; idle: number; cpus: number }): string {
  const perCpu = Array.from({ length: cpus }, (_, i) => `cpu${i} 0 0 0 0 0 0 0 0 0 0`).join('\n');
  return `cpu  ${busy} 0 0 ${idle} 0 0 0 0 0 0\n${perCpu}\nintr 0\nctxt 0\n`;
}

/**
 * A machine whose GPUs are those of a recorded nvidia-smi output (by file name in
 * test/fixtures/nvidia/): for the daemon tests (no GPU / an older driver / a newer one). The
 * rest is `fakeMachineSources`, with the load given (idle by default).
 */
export function fixtureMachine(fixtureName: string, load: () => Promise<FixtureLoad> = async () => ({}), base: Partial<MachineSources> = {}): MachineSources {
  return fixtureMachineSources(nvidiaFixture(fixtureName), fakeMachineSources(base), load);
}

/**
 * The environment that gives a `cycle daemon run` process a fixture machine (the test seam of
 * src/daemon/probe-fixture.ts): its GPUs from `fixtureName`, its non-job load from `loadFile`
 * (JSON, re-read at each probe; write `{"cpu_percent": 37}` to turn it busy).
 */
export function fixtureMachineEnv(fixtureName: string, loadFile?: string): Record<string, string> {
  return { CYCLE_DAEMON_PROBE_FIXTURE: path.join(NVIDIA_FIXTURES, fixtureName), ...(loadFile ? { CYCLE_DAEMON_PROBE_LOAD: loadFile } : {}) };
}
