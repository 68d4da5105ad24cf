import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';

export interface SpawnOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Text or a stream for the child's stdin (closed when done); omitted: no stdin. */
  input?: string | Uint8Array | Readable;
  /** Keep stdout/stderr in the result (default true). */
  capture?: boolean;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  /** On abort: SIGTERM, then SIGKILL after `killAfterMs`. */
  signal?: AbortSignal;
  killAfterMs?: number;
  timeoutMs?: number;
}

export interface SpawnResult {
  /** null when killed by a signal */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The program could not be started (ENOENT, EACCES). */
  spawnError?: NodeJS.ErrnoException;
  timedOut: boolean;
}

/**
 * Runs a program with node:child_process. cycle uses this rather than execa on its hot paths:
 * importing execa costs ~100 ms on Node 20, more than half of a whole `docker run`.
 */
export function runProcess(file: string, args: string[], options: SpawnOptions = {}): Promise<SpawnResult> {
  return new Promise((resolve) => {
    const capture = options.capture ?? true;
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timedOut = false;
    let settled = false;
    const child = spawn(file, args, {
      env: options.env as NodeJS.ProcessEnv | undefined,
      cwd: options.cwd,
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const finish = (result: SpawnResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      options.signal?.removeEventListener('abort', onAbort);
      resolve(result);
    };
    let killTimer: NodeJS.Timeout | undefined;
    const stop = (): void => {
      child.kill('SIGTERM');
      killTimer = setTimeout(() => child.kill('SIGKILL'), options.killAfterMs ?? 2000);
      killTimer.unref();
    };
    const onAbort = (): void => stop();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    if (options.signal?.aborted) stop();
    const timer = options.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          stop();
        }, options.timeoutMs)
      : undefined;
    child.stdout?.on('data', (chunk: Buffer) => {
      if (capture) stdout.push(chunk);
      options.onStdout?.(chunk);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      if (capture) stderr.push(chunk);
      options.onStderr?.(chunk);
    });
    if (child.stdin) {
      child.stdin.on('error', () => undefined); // the child may exit before reading it all
      const input = options.input;
      if (typeof input === 'string' || input instanceof Uint8Array) child.stdin.end(input);
      else if (input) {
        input.on('error', () => child.stdin?.destroy());
        input.pipe(child.stdin);
      }
    }
    child.on('error', (error: NodeJS.ErrnoException) => {
      finish({ exitCode: null, signal: null, stdout: '', stderr: error.message, spawnError: error, timedOut });
    });
    child.on('close', (exitCode, signal) => {
      finish({ exitCode, signal, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8'), timedOut });
    });
  });
}
