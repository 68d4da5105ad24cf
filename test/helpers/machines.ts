import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { MachineActivity, MachineInventory } from '../../src/api/machines.js';
import { parseNvidiaSmiTable } from '../../src/docker/gpu.js';

/** Machine inventories and activity for the machine pool's tests: GPUs, driver and CUDA read from the recorded nvidia-smi fixtures. */
const FIXTURES = path.join(import.meta.dirname, '..', 'fixtures', 'nvidia');

const BASE = { cpus: 16, memory_bytes: 64e9, free_disk_bytes: 500e9, docker: true, gvisor: true } as const;

/** A machine without a GPU. */
export function cpuInventory(overrides: Partial<MachineInventory> = {}): MachineInventory {
  return { ...BASE, gpus: [], gpu_problem: 'nvidia-smi: command not found', ...overrides };
}

/** A machine whose GPUs, driver and CUDA are what the fixture's `nvidia-smi` shows (`smi-550.144.03-cuda12.4-1gpu-a100.txt`). */
export function gpuInventory(fixture: string, overrides: Partial<MachineInventory> = {}): MachineInventory {
  const report = parseNvidiaSmiTable(readFileSync(path.join(FIXTURES, fixture), 'utf8'));
  if (!report) throw new Error(`${fixture}: not an nvidia-smi table`);
  return {
    ...BASE,
    gpus: report.gpus.map((gpu) => ({ index: gpu.index, name: gpu.name, memory_mib: 40_960 })),
    driver: report.driverVersion,
    ...(report.cudaVersion ? { cuda: report.cudaVersion } : {}),
    ...overrides,
  };
}

/** The older driver of the pool's tests: CUDA 12.4, one A100. */
export const OLDER_DRIVER = 'smi-550.144.03-cuda12.4-1gpu-a100.txt';
/** The newer driver: CUDA 13.0, one GPU. */
export const NEWER_DRIVER = 'smi-580.82.09-cuda13.0-1gpu.txt';

export const IDLE: MachineActivity = { idle: true, busy_reasons: [], paused_until: null, forbid_busy_assign: true };
