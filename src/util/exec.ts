import { CycleError, ExitCode, errnoCode } from '../errors.js';

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
  const { execa } = await import('execa');
  try {
    const result = await execa(file, args, {
      input: options.input,
      env: options.env,
      extendEnv: options.env === undefined,
      cwd: options.cwd,
      cancelSignal: options.signal,
      timeout: options.timeoutMs,
      reject: false,
      stripFinalNewline: false,
      encoding: 'utf8',
    });
    if (result.failed && result.exitCode === undefined) {
      const code = errnoCode(result.cause) ?? errnoCode(result);
      if (code === 'ENOENT') throw new ExecNotFound(file);
      if (result.isCanceled) throw new CycleError({ message: `${file} was interrupted`, exitCode: ExitCode.interrupted });
      if (result.timedOut) {
        return { exitCode: 124, stdout: String(result.stdout ?? ''), stderr: `${file} timed out after ${options.timeoutMs}ms` };
      }
      return { exitCode: 127, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? result.message) };
    }
    return { exitCode: result.exitCode ?? 1, stdout: String(result.stdout ?? ''), stderr: String(result.stderr ?? '') };
  } catch (error) {
    if (error instanceof ExecNotFound || error instanceof CycleError) throw error;
    if (errnoCode(error) === 'ENOENT') throw new ExecNotFound(file);
    throw error;
  }
};
