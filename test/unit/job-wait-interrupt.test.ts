import { describe, expect, it } from 'vitest';
import type { ApiClient } from '../../src/api/client.js';
import { waitForJob } from '../../src/commands/job/follow.js';
import { CycleError } from '../../src/errors.js';
import { fakeContext, tempDir } from '../helpers/context.js';

/**
 * An API whose first read of the job is still out when Ctrl-C comes: the read rejects as the
 * transport's requests do on the command's signal. Only what waitForJob asks before it follows.
 */
function apiCutByCtrlC(signal: AbortSignal, cancels: string[]): ApiClient {
  const api = {
    getJob: () =>
      new Promise((_, reject) => {
        signal.addEventListener('abort', () => reject(new CycleError({ message: 'interrupted', exitCode: 130 })), { once: true });
      }),
    cancel: async (id: string) => {
      cancels.push(id);
      return { status: 'cancelled' };
    },
  };
  // A partial fake: waitForJob reaches no other method before the interrupt.
  return api as unknown as ApiClient;
}

describe('job submit --wait: Ctrl-C while a request is out', () => {
  it('--cancel-on-interrupt cancels the job even when Ctrl-C cuts the first read of it', async () => {
    const controller = new AbortController();
    const { ctx } = fakeContext({ cwd: await tempDir('cycle-wait-'), signal: controller.signal });
    const cancels: string[] = [];
    const waiting = waitForJob(apiCutByCtrlC(controller.signal, cancels), 'job_1', ctx, { json: false, cancelOnInterrupt: true });
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ message: 'interrupted: job job_1 was cancelled (cancelled)', exitCode: 130 });
    expect(cancels).toEqual(['job_1']);
  });

  it('without it, the job is left running and the message says how to follow or stop it', async () => {
    const controller = new AbortController();
    const { ctx } = fakeContext({ cwd: await tempDir('cycle-wait-'), signal: controller.signal });
    const cancels: string[] = [];
    const waiting = waitForJob(apiCutByCtrlC(controller.signal, cancels), 'job_1', ctx, { json: false, cancelOnInterrupt: false });
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ message: 'interrupted: job job_1 is still running on the server', exitCode: 130 });
    expect(cancels).toEqual([]);
  });
});
