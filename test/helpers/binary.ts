import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';

/** The real binary (it runs dist/: build with `npx tsc -p tsconfig.json` first). */
export const cycleBin = path.join(import.meta.dirname, '..', '..', 'bin', 'cycle.js');

/**
 * Runs the binary with its stdout a pipe whose reader is already gone, as `cycle … | head -1`
 * leaves it once head has its line: every write to stdout fails with EPIPE.
 */
export async function runWithStdoutClosed(
  args: string[],
  options: { cwd: string; env: Record<string, string | undefined> },
): Promise<{ code: number | null; stderr: string }> {
  // The timeout only ends a run that would hang (a failing test), so no process outlives the test.
  const child = spawn(process.execPath, [cycleBin, ...args], { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000 });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const [code] = await once(child, 'close');
  return { code: typeof code === 'number' ? code : null, stderr };
}
