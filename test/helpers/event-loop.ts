/**
 * The longest the event loop was held while `work` ran, in ms: what a `/health` request arriving
 * meanwhile would have waited, at most. A 2 ms timer's gaps are measured in wall time and in the
 * process's CPU time, and each gap counts as the smaller of the two: code holding the loop uses
 * CPU all through the gap, while a process merely waiting for a core on a loaded machine does
 * not (so the measure holds on a busy CI host, where wall-time lateness alone is noise).
 */
export async function longestStallMs<T>(work: () => Promise<T>): Promise<{ stallMs: number; value: T }> {
  let longest = 0;
  let lastWall = performance.now();
  let lastCpu = cpuMs();
  let running = true;
  const tick = (): void => {
    const wall = performance.now();
    const cpu = cpuMs();
    longest = Math.max(longest, Math.min(wall - lastWall, cpu - lastCpu));
    lastWall = wall;
    lastCpu = cpu;
    if (running) setTimeout(tick, 2);
  };
  setTimeout(tick, 2);
  try {
    const value = await work();
    // The gap that ends with `work` is measured when the timer next fires: give it the chance.
    await new Promise((resolve) => setTimeout(resolve, 20));
    return { stallMs: longest, value };
  } finally {
    running = false;
  }
}

function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}
