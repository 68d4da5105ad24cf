/**
 * Waits for something the test cannot be told about directly (a job's state on a server, a
 * container in Docker), checking every 100 ms. Fails loudly at the deadline, naming what it
 * waited for and, when `describe` is given, what it saw last.
 */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 60_000,
  what = 'condition',
  describe?: () => string | Promise<string>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await predicate()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${describe ? `; last seen: ${await describe()}` : ''}`);
}
