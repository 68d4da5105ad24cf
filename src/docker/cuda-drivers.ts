/**
 * Minimum Linux x86_64 driver for each CUDA toolkit MAJOR.MINOR (its GA release), from NVIDIA's
 * CUDA Toolkit Release Notes, Table 3 (13.2 Update 2 edition); see
 * test/fixtures/nvidia/cuda-driver-table.md, which a unit test checks this table against.
 */
export const CUDA_MIN_DRIVER: ReadonlyArray<{ cuda: string; driver: string; verified: boolean }> = [
  { cuda: '13.3', driver: '610.43.02', verified: false },
  { cuda: '13.2', driver: '595.45.04', verified: true },
  { cuda: '13.1', driver: '590.44.01', verified: true },
  { cuda: '13.0', driver: '580.65.06', verified: true },
  { cuda: '12.9', driver: '575.51.03', verified: true },
  { cuda: '12.8', driver: '570.26', verified: true },
  { cuda: '12.6', driver: '560.28.03', verified: true },
  { cuda: '12.5', driver: '555.42.02', verified: true },
  { cuda: '12.4', driver: '550.54.14', verified: true },
  { cuda: '12.3', driver: '545.23.06', verified: true },
  { cuda: '12.2', driver: '535.54.03', verified: true },
  { cuda: '12.1', driver: '530.30.02', verified: true },
  { cuda: '12.0', driver: '525.60.13', verified: true },
  { cuda: '11.8', driver: '520.61.05', verified: true },
  { cuda: '11.7', driver: '515.43.04', verified: true },
  { cuda: '11.6', driver: '510.39.01', verified: true },
  { cuda: '11.5', driver: '495.29.05', verified: true },
  { cuda: '11.4', driver: '470.42.01', verified: true },
  { cuda: '11.3', driver: '465.19.01', verified: true },
  { cuda: '11.2', driver: '460.27.03', verified: true },
  { cuda: '11.1', driver: '455.23', verified: true },
  { cuda: '11.0', driver: '450.51.05', verified: true },
  { cuda: '10.2', driver: '440.33', verified: true },
  { cuda: '10.1', driver: '418.39', verified: true },
  { cuda: '10.0', driver: '410.48', verified: true },
];

/** Compares dotted versions numerically: 12.10 > 12.4, 570.124.06 > 570.26. */
export function compareVersions(a: string, b: string): number {
  const left = a.split('.').map(Number);
  const right = b.split('.').map(Number);
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const diff = (left[i] ?? 0) - (right[i] ?? 0);
    if (diff !== 0) return diff < 0 ? -1 : 1;
  }
  return 0;
}

/** The driver NVIDIA lists for a CUDA MAJOR.MINOR, if the table has it. */
export function minimumDriverFor(cuda: string): { driver: string; verified: boolean } | undefined {
  const row = CUDA_MIN_DRIVER.find((r) => compareVersions(r.cuda, cuda) === 0);
  return row ? { driver: row.driver, verified: row.verified } : undefined;
}

/** The newest CUDA a driver supports, by the table (for `CUDA Version: N/A` outputs). */
export function cudaForDriver(driver: string): string | undefined {
  return CUDA_MIN_DRIVER.find((row) => compareVersions(driver, row.driver) >= 0)?.cuda;
}
