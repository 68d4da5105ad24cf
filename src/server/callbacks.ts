import type { Job } from '../api/schemas.js';

/**
 * POSTs the finished job to its callback_url, retrying connection errors and 5xx answers with
 * backoff. Returns whether it was delivered.
 */
export async function deliverCallback(url: string, job: Job, options: { attempts?: number; baseDelayMs?: number; log?: (line: string) => void } = {}): Promise<boolean> {
  const attempts = options.attempts ?? 5;
  const base = options.baseDelayMs ?? 500;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'User-Agent': 'cycle-server', 'X-Cycle-Event': 'job.finished' },
        body: JSON.stringify({ event: 'job.finished', job }),
        signal: AbortSignal.timeout(10_000),
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
    if (attempt < attempts) await new Promise((resolve) => setTimeout(resolve, base * 2 ** (attempt - 1)));
  }
  return false;
}
