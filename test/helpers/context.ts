import fs from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { createContext, type Clock, type Context } from '../../src/context.js';
import { tempDir } from './temp.js';
import type { DockerDriver } from '../../src/docker/driver.js';
import type { Exec } from '../../src/util/exec.js';
import type { Prompter } from '../../src/ui/prompt.js';
import type { HttpStubs } from './http-stubs.js';

/** A stream that remembers what was written. */
export class Capture {
  chunks: string[] = [];
  isTTY: boolean;
  columns = 100;
  constructor(isTTY = false) {
    this.isTTY = isTTY;
  }
  write(chunk: string | Uint8Array): boolean {
    this.chunks.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  }
  get text(): string {
    return this.chunks.join('');
  }
}

export interface FakeContextOptions {
  cwd: string;
  env?: Record<string, string | undefined>;
  tty?: boolean;
  now?: number;
  docker?: DockerDriver;
  exec?: Exec;
  prompt?: Prompter;
  quiet?: boolean;
  signal?: AbortSignal;
  stdin?: string;
  debug?: boolean;
  /**
   * The API's answers (test/helpers/http-stubs.ts): `ctx.api()` is then a real ApiClient over
   * them, with CYCLE_API_URL and CYCLE_TOKEN pointing at them unless `env` says otherwise.
   */
  http?: HttpStubs;
}

export interface FakeContext {
  ctx: Context;
  stdout: Capture;
  stderr: Capture;
}

export const fixedClock = (start = Date.parse('2026-11-23T12:00:00Z')): Clock & { advance(ms: number): void } => {
  let now = start;
  return {
    now: () => now,
    sleep: async (ms: number) => {
      now += ms;
    },
    advance: (ms: number) => {
      now += ms;
    },
  };
};

/**
 * A clock that moves only when the test calls `advance`: a `sleep` stays pending until then, so a
 * timeout fires at the test's word, with no real waiting. `whenSleeping` resolves once `count`
 * sleeps are pending (the timer is armed), without polling; `sleeping` counts them now.
 */
export const manualClock = (
  start = Date.parse('2026-11-23T12:00:00Z'),
): Clock & { advance(ms: number): void; whenSleeping(count: number): Promise<void>; sleeping(): number } => {
  let now = start;
  const sleepers = new Set<{ due: number; wake(): void }>();
  const watchers: Array<{ count: number; resolve(): void }> = [];
  const notifyWatchers = (): void => {
    for (const watcher of [...watchers])
      if (sleepers.size >= watcher.count) {
        watchers.splice(watchers.indexOf(watcher), 1);
        watcher.resolve();
      }
  };
  return {
    now: () => now,
    sleep: (ms, signal) =>
      new Promise<void>((resolve, reject) => {
        if (signal?.aborted) {
          reject(signal.reason);
          return;
        }
        const sleeper = {
          due: now + ms,
          wake: (): void => {
            signal?.removeEventListener('abort', onAbort);
            resolve();
          },
        };
        const onAbort = (): void => {
          sleepers.delete(sleeper);
          reject(signal?.reason);
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        sleepers.add(sleeper);
        notifyWatchers();
      }),
    advance: (ms) => {
      now += ms;
      for (const sleeper of [...sleepers])
        if (sleeper.due <= now) {
          sleepers.delete(sleeper);
          sleeper.wake();
        }
    },
    sleeping: () => sleepers.size,
    whenSleeping: (count) =>
      new Promise<void>((resolve) => {
        watchers.push({ count, resolve });
        notifyWatchers();
      }),
  };
};

/** A context with captured streams, a fixed clock, no real prompts and (unless given) no Docker. */
export function fakeContext(options: FakeContextOptions): FakeContext {
  return contextOver(options, { stdout: new Capture(options.tty ?? false), stderr: new Capture(options.tty ?? false) });
}

function contextOver(options: FakeContextOptions, streams: { stdout: Capture; stderr: Capture }): FakeContext {
  const { stdout, stderr } = streams;
  const stdin = new PassThrough() as PassThrough & { isTTY?: boolean };
  stdin.isTTY = options.tty ?? false;
  stdin.end(options.stdin ?? '');
  const ctx = createContext({
    io: { stdout, stderr, stdin },
    env: fakeEnv(options),
    cwd: options.cwd,
    global: { quiet: options.quiet ?? false, debug: options.debug ?? false, color: false },
    version: '0.0.0-test',
    signal: options.signal ?? new AbortController().signal,
    clock: fixedClock(options.now),
    exec: options.exec ?? (async (file) => ({ exitCode: 127, stdout: '', stderr: `${file}: not available in unit tests` })),
    docker: async () => {
      if (!options.docker) throw new Error('this test has no Docker');
      return options.docker;
    },
    prompt: options.prompt ?? {
      available: false,
      ask: async () => {
        throw new Error('unexpected prompt');
      },
      choose: async () => {
        throw new Error('unexpected prompt');
      },
      secret: async () => {
        throw new Error('unexpected prompt');
      },
    },
    ...(options.http ? { apiDispatcher: options.http.dispatcher } : {}),
  });
  return { ctx, stdout, stderr };
}

function fakeEnv(options: FakeContextOptions): Record<string, string | undefined> {
  return {
    HOME: options.cwd,
    XDG_CONFIG_HOME: path.join(options.cwd, '.test-config'),
    NO_COLOR: '1',
    ...(options.http ? { CYCLE_API_URL: options.http.origin, CYCLE_TOKEN: 'stub-token' } : {}),
    ...options.env,
  };
}

/**
 * A command line run as the binary runs it (flags parsed, an error printed with its hint, the
 * exit code returned), over a fake context: the way to test what a user sees.
 */
export async function runCycle(args: string[], options: FakeContextOptions): Promise<{ code: number; stdout: string; stderr: string }> {
  // Loaded here: most tests that use this file never run the CLI.
  const { main } = await import('../../src/cli.js');
  const streams = { stdout: new Capture(options.tty ?? false), stderr: new Capture(options.tty ?? false) };
  const stdin = new PassThrough();
  stdin.end('');
  const code = await main(['node', 'cycle', ...args], {
    io: { ...streams, stdin },
    env: fakeEnv(options),
    cwd: options.cwd,
    handleSignals: false,
    contextFactory: async (global, signal) => contextOver({ ...options, quiet: global.quiet, debug: global.debug, signal }, streams).ctx,
  });
  return { code, stdout: streams.stdout.text, stderr: streams.stderr.text };
}

/**
 * The real `main` in this process with its real context (real HTTP, real files), as the binary
 * runs it: its streams captured (terminals when `tty`), stdin `stdin` (else empty), no signal
 * handlers.
 */
export async function runMain(
  args: string[],
  options: { env: Record<string, string | undefined>; cwd: string; stdin?: string; tty?: boolean },
): Promise<{ code: number; stdout: string; stderr: string }> {
  // Loaded here: most tests that use this file never run the CLI.
  const { main } = await import('../../src/cli.js');
  const stdout = new Capture(options.tty ?? false);
  const stderr = new Capture(options.tty ?? false);
  const stdin = new PassThrough();
  stdin.end(options.stdin ?? '');
  const code = await main(['node', 'cycle', ...args], { io: { stdout, stderr, stdin }, env: options.env, cwd: options.cwd, handleSignals: false });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

/** Temp folders live in temp.ts; most tests import them from here with the other helpers. */
export { tempDir };

export async function writeFiles(root: string, files: Record<string, string>): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(root, name);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, content);
  }
}

export const VALID_MANIFEST = `[main]
name = "demo"
build_files = []

[ubuntu]
version = "24.04"

[job]
email_on_success = false
email_on_failure = false
`;

/** A minimal valid .cycleswap/ project in a new temp folder. */
export async function cycleswapProject(files: Record<string, string> = {}): Promise<string> {
  const root = await tempDir();
  await writeFiles(root, {
    '.cycleswap/manifest.toml': VALID_MANIFEST,
    '.cycleswap/run.sh': 'echo hello\n',
    '.cycleswap/build.sh': 'echo building\n',
    ...files,
  });
  return root;
}
