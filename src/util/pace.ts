import { performance } from 'node:perf_hooks';

/** How long a walk made of synchronous fs calls may hold the event loop between yields. */
export const DEFAULT_SLICE_MS = 10;

/**
 * A turn of the event loop that lets waiting I/O in (a /health request, a socket's data). One
 * setImmediate is not that when it is asked for from an I/O callback (a request's body, a
 * socket's data): it runs in the same loop turn's check phase, before the loop polls again, so
 * the two pieces of work around it were one stall for every other client. The second runs after
 * the next poll.
 */
export function yieldToIo(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}

/**
 * A walk's pace: between steps, `const wait = pace(); if (wait) await wait;` yields to the event
 * loop (timers, sockets) once `sliceMs` have passed since the last yield, and costs a clock read
 * every `stepsPerClockRead` steps otherwise: no promise and no microtask per step (a 20,000-file
 * walk made 20,000 of each, ~10% of a warm `project hash`). Sync fs calls stay (they are several
 * times faster than awaited ones for 20,000 small stats), but no walk of a tree holds the loop for
 * longer than a slice plus `stepsPerClockRead` steps.
 */
export function pacer(sliceMs = DEFAULT_SLICE_MS, stepsPerClockRead = 1): () => Promise<void> | undefined {
  let since = performance.now();
  let steps = 0;
  const resume = (): void => {
    since = performance.now();
  };
  return () => {
    if (++steps < stepsPerClockRead) return undefined;
    steps = 0;
    if (performance.now() - since < sliceMs) return undefined;
    return yieldToIo().then(resume);
  };
}

/**
 * Steps of a file walk between clock reads: a clock read costs as much as a small step (40,000
 * of them were ~3% of a warm `project hash` of 20,000 files), and 16 steps of a walk (stats,
 * readdirs of one entry) take well under a millisecond.
 */
export const WALK_STEPS_PER_CLOCK_READ = 16;
