import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  createMachineProbe,
  desktopIdleMs,
  nonJobCpuPercent,
  parseProcStat,
  probeGpus,
  probeStaticInventory,
  realMachineSources,
  type MachineSources,
} from '../../src/daemon/probe.js';
import { DEFAULT_CONTROL_STATE } from '../../src/daemon/control.js';
import { ExecNotFound, type Exec } from '../../src/util/exec.js';
import { daemonMachineSources } from '../../src/daemon/probe-fixture.js';
import { tempDir } from '../helpers/temp.js';
import { fakeDockerInfo, fakeMachineSources, fixtureMachine, fixtureMachineEnv, nvidiaFixture, procStat } from '../helpers/machine-sources.js';

const control = () => DEFAULT_CONTROL_STATE;

/** nvidia-smi answering the probe's two calls from recorded outputs (the query and the table). */
function smiExec(answers: { query?: string; table?: string; apps?: string; load?: string }): Exec & { calls: string[][] } {
  const calls: string[][] = [];
  const exec = (async (file: string, args: string[]) => {
    calls.push([file, ...args]);
    if (file !== 'nvidia-smi') throw new ExecNotFound(file);
    const query = args.find((a) => a.startsWith('--query-gpu='));
    if (query?.includes('utilization.gpu')) return { exitCode: 0, stdout: answers.load ?? '', stderr: '' };
    if (query)
      return answers.query === undefined ? { exitCode: 6, stdout: '', stderr: 'Field not supported' } : { exitCode: 0, stdout: answers.query, stderr: '' };
    if (args.some((a) => a.startsWith('--query-compute-apps='))) return { exitCode: 0, stdout: answers.apps ?? '', stderr: '' };
    return answers.table === undefined ? { exitCode: 1, stdout: '', stderr: '' } : { exitCode: 0, stdout: answers.table, stderr: '' };
  }) as Exec & { calls: string[][] };
  exec.calls = calls;
  return exec;
}

describe('the machine inventory from recorded nvidia-smi outputs', () => {
  it('an A100 with driver 550.144.03 supports CUDA 12.4 (table fixture)', async () => {
    const inventory = await probeStaticInventory(fixtureMachine('smi-550.144.03-cuda12.4-1gpu-a100.txt'));
    expect(inventory).toMatchObject({
      gpus: [{ index: 0, name: 'NVIDIA A100-SXM4-40GB', memory_mib: 40960 }],
      driver: '550.144.03',
      cuda: '12.4',
      docker: true,
      gvisor: true,
    });
    expect(inventory.gpu_problem).toBeUndefined();
  });

  it('a GTX 960 with driver 580.82.09 supports CUDA 13.0 (R580 layout)', async () => {
    const inventory = await probeStaticInventory(fixtureMachine('smi-580.82.09-cuda13.0-1gpu.txt'));
    expect(inventory).toMatchObject({ gpus: [{ index: 0, name: 'NVIDIA GeForce GTX 960', memory_mib: 2048 }], driver: '580.82.09', cuda: '13.0' });
  });

  it('an H200 from the wide --query-gpu CSV: name, memory, uuid, driver; CUDA from the driver table', async () => {
    const inventory = await probeStaticInventory(fixtureMachine('query-csv-wide-header-590.48.01-h200.txt'));
    expect(inventory).toMatchObject({
      gpus: [{ index: 0, name: 'NVIDIA H200', memory_mib: 143771, uuid: 'GPU-00000000-0000-0000-0000-000000000000' }],
      driver: '590.48.01',
      cuda: '13.1',
    });
  });

  it('eight H200 GPUs of the 570 table, each with its memory', async () => {
    const inventory = await probeStaticInventory(fixtureMachine('smi-570.133.20-cuda12.8-8gpu-h200.txt'));
    expect(inventory.gpus).toHaveLength(8);
    expect(inventory.gpus.map((g) => g.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(inventory.gpus[7]!.memory_mib).toBeGreaterThan(140_000);
    expect(inventory.cuda).toBe('12.8');
  });

  it('no nvidia-smi: a CPU machine, no GPUs and no problem', async () => {
    const inventory = await probeStaticInventory(fixtureMachine('smi-fail-command-not-found.txt'));
    expect(inventory).toMatchObject({ gpus: [], docker: true });
    expect(inventory.driver).toBeUndefined();
    expect(inventory.gpu_problem).toBeUndefined();
  });

  it('a driver that is not loaded: no GPUs, and the failure as gpu_problem', async () => {
    const inventory = await probeStaticInventory(fixtureMachine('smi-fail-driver-comm.txt'));
    expect(inventory.gpus).toEqual([]);
    expect(inventory.gpu_problem).toMatch(/nvidia-smi failed \(driver-not-loaded\): NVIDIA-SMI has failed/);
  });

  it('a driver/library mismatch says so', async () => {
    const inventory = await probeStaticInventory(fixtureMachine('smi-fail-nvml-mismatch.txt'));
    expect(inventory.gpu_problem).toMatch(/version-mismatch/);
  });

  it('GPUs without an NVIDIA runtime in Docker: gpu_problem names the fix', async () => {
    const sources = fakeMachineSources({
      exec: smiExec({ table: nvidiaFixture('smi-550.144.03-cuda12.4-1gpu-a100.txt'), query: '0, NVIDIA A100-SXM4-40GB, 40960, GPU-abc, 550.144.03\n' }),
    });
    const inventory = await probeStaticInventory(sources);
    expect(inventory.gpus).toEqual([{ index: 0, name: 'NVIDIA A100-SXM4-40GB', memory_mib: 40960, uuid: 'GPU-abc' }]);
    expect(inventory.gpu_problem).toMatch(/Docker has no NVIDIA container runtime.*nvidia-ctk/);
  });

  it('Docker down: docker and gvisor false', async () => {
    const inventory = await probeStaticInventory(
      fakeMachineSources({
        dockerInfo: async () => {
          throw new Error('Cannot connect to the Docker daemon');
        },
      }),
    );
    expect(inventory).toMatchObject({ docker: false, gvisor: false, gpus: [] });
  });

  it('no runsc runtime: gvisor false', async () => {
    expect((await probeStaticInventory(fakeMachineSources({ dockerInfo: async () => fakeDockerInfo(['runc']) }))).gvisor).toBe(false);
  });

  it('CUDA N/A in the table (driver container): the CUDA version comes from the driver table', async () => {
    const { cuda, driver } = await probeGpus(smiExec({ table: nvidiaFixture('smi-550.54.14-cuda-NA-1gpu-a100-mig-gputable-only.txt') }));
    expect(driver).toBe('550.54.14');
    expect(cuda).toBe('12.4');
  });
});

describe('the machine probe', () => {
  it('cpus, memory and free disk of the machine, and the version', async () => {
    const probe = createMachineProbe({ sources: fakeMachineSources(), dataDir: '/data', control, version: '1.2.3' });
    const { inventory } = await probe();
    expect(inventory).toMatchObject({ cpus: 4, memory_bytes: 64 * 1024 ** 3, free_disk_bytes: 500 * 1024 ** 3, version: '1.2.3' });
  });

  it("non-job CPU: busy ticks between two probes less the job groups' usage_usec", async () => {
    // 4 CPUs; each reading advances 400 ticks = 1 s of wall time on 4 CPUs.
    let reading = 0;
    const busyPerReading = [0, 200, 400]; // 0 %, then 50 %, then 50 % of the machine
    const usage = [0, 1_000_000, 2_000_000]; // the job used 1 CPU-second per window = 25 %
    let cpuReads = 0;
    const sources = fakeMachineSources({
      readProcFile: async (name) => {
        if (name === 'meminfo') return `MemTotal: 1000 kB\nMemAvailable: 1000 kB\n`;
        const i = reading++;
        return procStat({ busy: busyPerReading[i]!, idle: 400 * i - busyPerReading[i]!, cpus: 4 });
      },
      readCgroupFile: async (group, file) => (group === 'docker/job1' && file === 'cpu.stat' ? `usage_usec ${usage[cpuReads++]}\nuser_usec 0\n` : undefined),
    });
    const probe = createMachineProbe({ sources, dataDir: '/d', control, jobCgroups: () => ['docker/job1'] });
    const first = await probe();
    expect(sources.sleeps).toEqual([1000]);
    expect(first.load.cpuPercent).toBeCloseTo(25, 5); // 50 % busy, 25 % of it the job's
    expect(first.activity.idle).toBe(false);
    expect(first.activity.busy_reasons).toEqual(['non-job CPU 25 % > 5 %']);
    const second = await probe();
    expect(sources.sleeps).toEqual([1000]); // measured since the first probe: no new wait
    expect(second.load.cpuPercent).toBeCloseTo(25, 5);
  });

  it("non-job RAM: MemTotal − MemAvailable less the jobs' memory.current − inactive_file", async () => {
    const sources = fakeMachineSources({
      readProcFile: async (name) =>
        name === 'meminfo' ? `MemTotal: ${64 * 1024 ** 2} kB\nMemAvailable: ${40 * 1024 ** 2} kB\n` : procStat({ busy: 0, idle: 0, cpus: 2 }),
      readCgroupFile: async (_group, file) => {
        if (file === 'memory.current') return `${10 * 1024 ** 3}\n`;
        if (file === 'memory.stat') return `anon 1\ninactive_file ${2 * 1024 ** 3}\n`;
        return undefined;
      },
    });
    const { load, activity } = await createMachineProbe({ sources, dataDir: '/d', control, jobCgroups: () => ['docker/a'] })();
    expect(load.memoryBytes).toBe(16 * 1024 ** 3); // 24 GiB used, 8 GiB of it the job's
    expect(activity.idle).toBe(true); // ≤ 16 GB is idle
  });

  it("GPU load: a GPU with a job process (or given to a task) is the job's; another GPU's SM and VRAM count", async () => {
    const exec = smiExec({
      query: '0, A, 81920, GPU-a, 550.1\n1, B, 81920, GPU-b, 550.1\n2, C, 81920, GPU-c, 550.1\n',
      table: nvidiaFixture('smi-550.144.03-cuda12.4-1gpu-a100.txt'),
      load: '0, GPU-a, 97, 30000\n1, GPU-b, 40, 3000\n2, GPU-c, 100, 50000\n',
      apps: 'GPU-a, 4242, 30000\nGPU-b, 999, 3000\n',
    });
    const sources = fakeMachineSources({ exec, readCgroupFile: async (_g, file) => (file === 'cgroup.procs' ? '4242\n4243\n' : undefined) });
    const { load, activity } = await createMachineProbe({ sources, dataDir: '/d', control, jobCgroups: () => ['docker/a'], jobGpus: () => [2] })();
    expect(load.gpus).toEqual([{ index: 1, utilPercent: 40, nonJobVramBytes: 3000 * 1024 ** 2 }]);
    expect(activity.busy_reasons).toEqual(['GPU 1 SM 40 % > 5 % (no job of this daemon runs on it)', 'GPU 1 non-job VRAM 2.9 GB > 2.0 GB']);
  });

  it('a fixture machine reports the load its test asks for', async () => {
    let load = {};
    const probe = createMachineProbe({ sources: fixtureMachine('smi-580.82.09-cuda13.0-1gpu.txt', async () => load), dataDir: '/d', control });
    expect((await probe()).activity).toEqual({ idle: true, busy_reasons: [], paused_until: null, forbid_busy_assign: true });
    load = { cpu_percent: 37, vram_used_mib: 4096, input_idle_s: 10 };
    const busy = (await probe()).activity;
    expect(busy.idle).toBe(false);
    expect(busy.busy_reasons).toEqual(['non-job CPU 37 % > 5 %', 'GPU 0 non-job VRAM 4.0 GB > 2.0 GB', 'keyboard/mouse input 10 s ago < 5 min']);
  });

  it('the control state goes into the activity', async () => {
    const paused = { paused_until: '2030-01-01T00:00:00.000Z', forbid_busy_assign: false };
    const { activity } = await createMachineProbe({ sources: fakeMachineSources(), dataDir: '/d', control: () => paused })();
    expect(activity).toMatchObject(paused);
  });

  it("the inventory's slow part is probed once a minute, not at each heartbeat", async () => {
    const exec = smiExec({ table: nvidiaFixture('smi-580.82.09-cuda13.0-1gpu.txt') });
    let now = 0;
    const probe = createMachineProbe({ sources: fakeMachineSources({ exec }), dataDir: '/d', control, now: () => now });
    await probe();
    await probe();
    const tables = () => exec.calls.filter((c) => c.length === 1).length;
    expect(tables()).toBe(1);
    now += 61_000;
    await probe();
    expect(tables()).toBe(2);
  });
});

describe('probe parts', () => {
  it('parseProcStat sums user..steal and counts CPUs', () => {
    expect(parseProcStat('cpu  10 1 2 100 5 0 1 0 3 0\ncpu0 1\ncpu1 1\n')).toEqual({ total: 119, idle: 105, cpus: 2 });
  });

  it('nonJobCpuPercent never goes below 0 or above 100', () => {
    const sample = (total: number, idle: number, usec: number) => ({ total, idle, cpus: 1, jobUsec: new Map([['g', usec]]) });
    expect(nonJobCpuPercent(sample(0, 0, 0), sample(100, 50, 2_000_000))).toBe(0);
    expect(nonJobCpuPercent(sample(0, 0, 0), sample(0, 0, 0))).toBe(0);
  });

  it('desktop idle: xprintidle under X; logind hints otherwise; no graphical session is undefined', async () => {
    const answers: Record<string, string> = {
      xprintidle: '123456\n',
      'loginctl list-sessions --no-legend': '  3 1000 ann seat0 tty2\n  7 1000 ann - pts/1\n',
      'loginctl show-session 3 -p Type -p Active -p IdleHint -p IdleSinceHint': 'Type=wayland\nActive=yes\nIdleHint=yes\nIdleSinceHint=1000000000\n',
      'loginctl show-session 7 -p Type -p Active -p IdleHint -p IdleSinceHint': 'Type=tty\nActive=no\nIdleHint=no\nIdleSinceHint=0\n',
    };
    const exec: Exec = async (file, args) => {
      const out = answers[[file, ...args].join(' ')];
      return out === undefined ? { exitCode: 1, stdout: '', stderr: '' } : { exitCode: 0, stdout: out, stderr: '' };
    };
    expect(await desktopIdleMs(exec, { DISPLAY: ':0' })).toBe(123456);
    expect(await desktopIdleMs(exec, {}, () => 1_000_000 + 400_000)).toBe(400_000);
    answers['loginctl show-session 3 -p Type -p Active -p IdleHint -p IdleSinceHint'] = 'Type=x11\nIdleHint=no\nIdleSinceHint=0\n';
    expect(await desktopIdleMs(exec, {})).toBe(0);
    delete answers['loginctl show-session 3 -p Type -p Active -p IdleHint -p IdleSinceHint'];
    expect(await desktopIdleMs(exec, {})).toBeUndefined();
  });
});

describe('MachineSources fakes', () => {
  it('are complete (a type check that the helper stays in step with the interface)', () => {
    const sources: MachineSources = fakeMachineSources();
    expect(typeof sources.readProcFile).toBe('function');
  });
});

describe('the real sources and the test seam', () => {
  it("realMachineSources reads this machine's /proc and disk (nvidia-smi and Docker faked away)", async () => {
    const dataDir = await tempDir();
    const sources = realMachineSources({
      exec: async (file) => {
        throw new ExecNotFound(file);
      },
      docker: async () => {
        throw new Error('no Docker in this test');
      },
      env: {},
    });
    const { inventory, activity, load } = await createMachineProbe({ sources, dataDir, control, firstSampleMs: 50 })();
    expect(inventory.cpus).toBeGreaterThanOrEqual(1);
    expect(inventory.memory_bytes).toBeGreaterThan(64 * 1024 ** 2);
    expect(inventory.free_disk_bytes).toBeGreaterThan(0);
    expect(inventory).toMatchObject({ gpus: [], docker: false, gvisor: false });
    expect(load.cpuPercent).toBeGreaterThanOrEqual(0);
    expect(load.memoryBytes).toBeGreaterThan(0);
    expect(activity.busy_reasons.length === 0).toBe(activity.idle);
    expect(await sources.readCgroupFile('../../etc', 'cgroup.procs')).toBeUndefined();
  });

  it("CYCLE_DAEMON_PROBE_FIXTURE gives the daemon a fixture's GPUs; CYCLE_DAEMON_PROBE_LOAD its load, re-read at each probe", async () => {
    const dir = await tempDir();
    const loadFile = path.join(dir, 'load.json');
    const env = fixtureMachineEnv('smi-550.144.03-cuda12.4-1gpu-a100.txt', loadFile);
    const sources = await daemonMachineSources(env, fakeMachineSources());
    const probe = createMachineProbe({ sources, dataDir: dir, control });
    const first = await probe();
    expect(first.inventory).toMatchObject({ gpus: [{ name: 'NVIDIA A100-SXM4-40GB', memory_mib: 40960 }], cuda: '12.4' });
    expect(first.activity.idle).toBe(true);
    await fs.writeFile(loadFile, '{"gpu_util_percent": 80}');
    expect((await probe()).activity.busy_reasons).toEqual(['GPU 0 SM 80 % > 5 % (no job of this daemon runs on it)']);
    await fs.writeFile(loadFile, '{"cpu": 80}');
    await expect(probe()).rejects.toThrow(`CYCLE_DAEMON_PROBE_LOAD=${loadFile}: expected JSON like`);
  });

  it('without the seam the real sources are used; a missing fixture is a usage error naming it', async () => {
    const real = fakeMachineSources();
    expect(await daemonMachineSources({}, real)).toBe(real);
    await expect(daemonMachineSources({ CYCLE_DAEMON_PROBE_FIXTURE: '/nonexistent/smi.txt' }, real)).rejects.toThrow(
      /CYCLE_DAEMON_PROBE_FIXTURE=\/nonexistent\/smi.txt: cannot read the nvidia-smi fixture/,
    );
  });
});
