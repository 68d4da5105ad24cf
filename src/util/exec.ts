import { runProcess } from './process.js';

export interface ExecOptions {
  input?: string | Uint8Array;
  env?: Record<string, string | undefined>;
  cwd?: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program to completion and captures its output. A non-zero exit is a result, not an
 * exception; a missing program throws `ExecNotFound` so callers can say how to install it.
 */
export type Exec = (file: string, args: string[], options?: ExecOptions) => Promise<ExecResult>;

export class ExecNotFound extends Error {
  constructor(readonly file: string) {
    super(`${file}: command not found`);
  }
}

export const realExec: Exec = async (file, args, options = {}) => {
  const result = await runProcess(file, args, {
    env: options.env ?? process.env,
    cwd: options.cwd,
    input: options.input,
    signal: options.signal,
    timeoutMs: options.timeoutMs,
  });
  if (result.spawnError) {
    if (result.spawnError.code === 'ENOENT') throw new ExecNotFound(file);
    return { exitCode: 127, stdout: '', stderr: result.spawnError.message };
  }
  if (result.timedOut) return { exitCode: 124, stdout: result.stdout, stderr: `${result.stderr}\n${file} timed out after ${options.timeoutMs}ms` };
  return { exitCode: result.exitCode ?? 128, stdout: result.stdout, stderr: result.stderr };
};
