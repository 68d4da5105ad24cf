import fs from 'node:fs/promises';
import os from 'node:os';
import type { MachineActivity, MachineInventory } from '../../api/machines.js';
import type { DockerDriver } from '../../docker/driver.js';
import { gvisorRegistered } from '../../runner/limits.js';
import type { Exec } from '../../util/exec.js';

/** What a daemon's probe says: what the machine has, and whether it may take work now. */
export type MachineProbe = () => Promise<{ inventory: MachineInventory; activity: MachineActivity }>;

/**
 * A plain probe: CPUs, memory and free disk from the OS, the GPUs, driver and CUDA from the
 * same nvidia-smi probe as `cycle project test`, Docker and gVisor from `docker info`; the
 * machine always counts as idle and never paused. The daemon's real probe (the idle rule, pause,
 * forbid-busy-assign) takes its place through the same type.
 */
export function basicMachineProbe(options: { exec: Exec; docker: () => Promise<DockerDriver>; dataDir: string; version: string }): MachineProbe {
  return async () => {
    const { probeNvidia } = await import('../../docker/gpu.js');
    const [nvidia, disk, docker] = await Promise.all([
      probeNvidia(options.exec),
      fs.statfs(options.dataDir).catch(() => undefined),
      options.docker().then(
        async (driver) => ({ ok: true, gvisor: await gvisorRegistered(driver).catch(() => false) }),
        () => ({ ok: false, gvisor: false }),
      ),
    ]);
    const inventory: MachineInventory = {
      cpus: os.cpus().length,
      memory_bytes: os.totalmem(),
      free_disk_bytes: disk ? disk.bavail * disk.bsize : 0,
      gpus: nvidia.ok ? nvidia.report.gpus.map((gpu) => ({ index: gpu.index, name: gpu.name, memory_mib: 0 })) : [],
      ...(nvidia.ok ? { driver: nvidia.report.driverVersion } : {}),
      ...(nvidia.ok && nvidia.report.cudaVersion ? { cuda: nvidia.report.cudaVersion } : {}),
      ...(nvidia.ok ? {} : { gpu_problem: `${nvidia.reason}: ${nvidia.detail.split('\n')[0]}`.slice(0, 1024) }),
      docker: docker.ok,
      gvisor: docker.gvisor,
      version: options.version,
    };
    return { inventory, activity: { idle: true, busy_reasons: [], paused_until: null, forbid_busy_assign: false } };
  };
}
