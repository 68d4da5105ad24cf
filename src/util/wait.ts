import type { Clock } from '../context.js';

/** Waits for `work`, at most `ms` on `clock`; the sleep is ended either way (no timer outlives it). */
export async function settledWithin(work: Promise<unknown>, ms: number, clock: Clock): Promise<void> {
  const timer = new AbortController();
  try {
    await Promise.race([work, clock.sleep(ms, timer.signal).catch(() => undefined)]);
  } finally {
    timer.abort();
  }
}
