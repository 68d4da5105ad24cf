import os from 'node:os';
import path from 'node:path';
import { Ui, type Palette } from './ui/ui.js';
import { colorEnabled, interactiveEnabled, type Env, type IO } from './ui/streams.js';
export { colorEnabled } from './ui/streams.js';
import type { Exec } from './util/exec.js';
import type { DockerDriver } from './docker/driver.js';
import { createPrompter, type Prompter } from './ui/prompt.js';
import type { Dispatcher } from 'undici';
import type { ApiClient } from './api/client.js';

/** The flags that pick a server (`--api-url`); the rest comes from the environment and config. */
export interface ConnectFlags {
  apiUrl?: string;
}

export interface Clock {
  /** Wall-clock milliseconds since the epoch (stored times). */
  now(): number;
  /**
   * Milliseconds on a clock that never jumps (it does not follow wall-clock changes, and stands
   * still while the machine is suspended): for how long something has been held, such as a
   * lease. A clock without it measures with `now`.
   */
  elapsed?(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export interface GlobalOptions {
  quiet: boolean;
  debug: boolean;
  /** false when --no-color was given */
  color: boolean;
}

/**
 * Everything a command touches in the outside world. Commands receive it as `ctx`, so a
 * test can run any command with captured streams, a fixed clock, a temp cwd and fake Docker.
 */
export interface Context {
  io: IO;
  env: Env;
  cwd: string;
  clock: Clock;
  ui: Ui;
  version: string;
  /** Aborted on Ctrl-C; long operations watch it and clean up. */
  signal: AbortSignal;
  exec: Exec;
  prompt: Prompter;
  docker(): Promise<DockerDriver>;
  /**
   * The API client for the configured server (`--api-url` > env > project config > user
   * config), built on first use and once per settings; throws the usage or auth error that
   * says what is missing. Commands get their client here, never by hand.
   */
  api(flags?: ConnectFlags): Promise<ApiClient>;
  /** $XDG_CONFIG_HOME/cycle */
  configDir: string;
  /** $XDG_DATA_HOME/cycle */
  dataDir: string;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  elapsed: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

export function userConfigDir(env: Env): string {
  const base = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : path.join(env.HOME ?? os.homedir(), '.config');
  return path.join(base, 'cycle');
}

export function userDataDir(env: Env): string {
  const base = env.XDG_DATA_HOME && path.isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : path.join(env.HOME ?? os.homedir(), '.local', 'share');
  return path.join(base, 'cycle');
}

export interface ContextInit {
  io: IO;
  env: Env;
  cwd: string;
  global: GlobalOptions;
  version: string;
  signal: AbortSignal;
  clock?: Clock;
  exec?: Exec;
  docker?: () => Promise<DockerDriver>;
  prompt?: Prompter;
  /** Where the API client's requests go instead of undici's agent: a test's stubs (test/helpers/http-stubs.ts). */
  apiDispatcher?: Dispatcher;
  /** Colours, when on (see `colorEnabled`); loaded by the caller so this stays synchronous. */
  palette?: Palette;
}

/** The real process runner, loaded when a command first runs a process (node:child_process costs ~20 ms of start-up). */
const execOnFirstUse: Exec = async (file, args, options) => (await import('./util/exec.js')).realExec(file, args, options);

export function createContext(init: ContextInit): Context {
  const color = colorEnabled(init.io.stderr, init.env, init.global.color);
  const ui = new Ui(
    init.io,
    {
      color,
      quiet: init.global.quiet,
      debug: init.global.debug,
      interactive: interactiveEnabled(init.io, init.env),
    },
    color ? init.palette : undefined,
  );
  const exec = init.exec ?? execOnFirstUse;
  let driver: Promise<DockerDriver> | undefined;
  // The API client's modules (undici, zod) load when a command first asks for it.
  let apiClients: Promise<(flags?: ConnectFlags) => Promise<ApiClient>> | undefined;
  const ctx: Context = {
    io: init.io,
    env: init.env,
    cwd: init.cwd,
    clock: init.clock ?? systemClock,
    ui,
    version: init.version,
    signal: init.signal,
    exec,
    prompt: init.prompt ?? createPrompter(init.io, ui.options.interactive),
    docker:
      init.docker ??
      (() => {
        driver ??= createDockerDriver(init.env, (line) => ui.debug(line));
        return driver;
      }),
    api: async (flags) => {
      apiClients ??= import('./api/connect.js').then(({ apiClientFactory }) => apiClientFactory(ctx, init.apiDispatcher));
      return (await apiClients)(flags);
    },
    configDir: userConfigDir(init.env),
    dataDir: userDataDir(init.env),
  };
  return ctx;
}

/** The Engine API driver when the daemon's socket can be reached directly, else the docker CLI. */
async function createDockerDriver(env: Env, debug: (line: string) => void): Promise<DockerDriver> {
  const { resolveDockerEndpoint } = await import('./docker/endpoint.js');
  const endpoint = resolveDockerEndpoint(env);
  if (endpoint) {
    const { EngineDockerDriver } = await import('./docker/engine-driver.js');
    debug(`docker: Engine API at ${endpoint.description}; builds through the docker CLI`);
    return new EngineDockerDriver(endpoint, { env, debug });
  }
  const { CliDockerDriver } = await import('./docker/cli-driver.js');
  debug('docker: through the docker CLI');
  return new CliDockerDriver({ env, debug });
}
