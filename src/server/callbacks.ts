import type { Job } from '../api/schemas.js';

/**
 * POSTs the finished job to its callback_url, retrying connection errors and 5xx answers with
 * backoff. Returns whether it was delivered.
 */
export async function deliverCallback(
  url: string,
  job: Job,
  options: { attempts?: number; baseDelayMs?: number; log?: (line: string) => void; signal?: AbortSignal } = {},
): Promise<boolean> {
  const attempts = options.attempts ?? 5;
  const base = options.baseDelayMs ?? 500;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'User-Agent': 'cycle-server', 'X-Cycle-Event': 'job.finished' },
        body: JSON.stringify({ event: 'job.finished', job }),
        signal: options.signal ? AbortSignal.any([options.signal, AbortSignal.timeout(10_000)]) : AbortSignal.timeout(10_000),
      });
      await response.arrayBuffer().catch(() => undefined);
      if (response.ok) return true;
      if (response.status < 500 && response.status !== 429) {
        options.log?.(`callback ${url} for ${job.id}: HTTP ${response.status}, not retried`);
        return false;
      }
      options.log?.(`callback ${url} for ${job.id}: HTTP ${response.status} (attempt ${attempt}/${attempts})`);
    } catch (error) {
      options.log?.(`callback ${url} for ${job.id}: ${(error as Error).message} (attempt ${attempt}/${attempts})`);
    }
    // A stopping server gives up (the callback stays pending and is sent on the next start).
    if (options.signal?.aborted) return false;
    if (attempt < attempts) await abortableDelay(base * 2 ** (attempt - 1), options.signal);
  }
  return false;
}

function abortableDelay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
