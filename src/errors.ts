/**
 * The one error type of cycle. Core code throws it; only cli.ts prints it.
 * Exit codes are part of the public contract (README, `cycle help exit-codes`).
 */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  invalidProject: 3,
  auth: 4,
  network: 5,
  jobFailed: 6,
  /** The server answered 402: the account has too little money for what was asked. */
  payment: 7,
  interrupted: 130,
  /** Stopped by SIGTERM (128 + 15, as a shell reports it). */
  terminated: 143,
} as const;

export const exitCodeTable: ReadonlyArray<{ code: number; name: string; meaning: string }> = [
  { code: 0, name: 'ok', meaning: 'the command did what was asked' },
  { code: 1, name: 'failure', meaning: 'a general failure (unknown job id, file not found, unexpected error)' },
  { code: 2, name: 'usage', meaning: 'bad flags or arguments; nothing was done' },
  { code: 3, name: 'invalid project', meaning: 'the project manifest or files are invalid (see `cycle project validate`)' },
  { code: 4, name: 'auth', meaning: 'no token, or the server refused the token' },
  { code: 5, name: 'network/server', meaning: "the server, Docker or this machine's daemon could not be reached, or answered with an error" },
  { code: 6, name: 'job failed', meaning: 'the job itself ran and failed (non-zero exit, failed or partial job)' },
  { code: 7, name: 'payment', meaning: 'the account has too little money (HTTP 402): fund it, then run the same command again' },
  { code: 130, name: 'interrupted', meaning: 'stopped by Ctrl-C (SIGINT); containers and temp files were cleaned up' },
  { code: 143, name: 'terminated', meaning: 'stopped by SIGTERM; cleaned up as on Ctrl-C' },
];

export interface CycleErrorInit {
  message: string;
  hint?: string;
  exitCode?: number;
  cause?: unknown;
  /** Extra lines printed under the message (diagnostics, the tail of a log). */
  details?: string[];
}

export class CycleError extends Error {
  readonly hint: string | undefined;
  readonly exitCode: number;
  readonly details: string[];

  constructor(init: CycleErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'CycleError';
    this.hint = init.hint;
    this.exitCode = init.exitCode ?? ExitCode.failure;
    this.details = init.details ?? [];
  }
}

export function usageError(message: string, hint?: string): CycleError {
  return new CycleError({ message, hint, exitCode: ExitCode.usage });
}

export function isCycleError(value: unknown): value is CycleError {
  return value instanceof CycleError;
}

/** Node's system errors carry a string `code` such as ENOENT. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}
