import type { Context } from '../context.js';
import { CycleError, ExitCode } from '../errors.js';
import { resolveApiSettings } from '../config/config.js';
import { findProjectRoot, loadProject, locateProject, type Project } from '../project/load.js';
import { PROJECT_NAME_PATTERN, PROJECT_NAME_RULE } from '../project/names.js';
import type { Dispatcher } from 'undici';
import type { ApiClient } from './client.js';

/** The flags that pick a server: declared by the context, whose `api(flags)` takes them. */
import type { ConnectFlags } from '../context.js';
export type { ConnectFlags };

/** What one API client is built for: the server, the token and the HTTP settings from the environment. */
export interface ApiConnection {
  baseUrl: string;
  token: string | undefined;
  timeoutMs?: number;
  attempts?: number;
}

/** The configured server (flags > env > project config > user config), or the error that says what is missing. */
export async function resolveApiConnection(ctx: Pick<Context, 'cwd' | 'env' | 'configDir'>, flags: ConnectFlags = {}): Promise<ApiConnection> {
  let projectRoot: string | undefined;
  try {
    projectRoot = (await findProjectRoot(ctx.cwd)).root;
  } catch {
    projectRoot = undefined;
  }
  const settings = await resolveApiSettings({ env: ctx.env, configDir: ctx.configDir, ...(projectRoot ? { projectRoot } : {}) }, flags);
  if (!settings.apiUrl) {
    throw new CycleError({
      message: 'no API URL: cycle does not know which server to talk to',
      hint: 'set CYCLE_API_URL, pass --api-url, or run `cycle auth login --api-url URL` (a local backend: `cycle server`)',
      exitCode: ExitCode.usage,
    });
  }
  if (settings.tokenWithheld) throw new CycleError({ ...settings.tokenWithheld, exitCode: ExitCode.auth });
  const seconds = Number(ctx.env.CYCLE_HTTP_TIMEOUT);
  const attempts = Number(ctx.env.CYCLE_HTTP_RETRIES);
  return {
    baseUrl: settings.apiUrl,
    token: settings.token,
    ...(seconds > 0 ? { timeoutMs: seconds * 1000 } : {}),
    ...(attempts > 0 ? { attempts } : {}),
  };
}

/**
 * `ctx.api`: the settings resolved on every call (as cheap as reading two small files), the
 * client built once per settings, so the commands a process runs share its connections.
 * `dispatcher` is where requests go instead of undici's agent (a test's stubs).
 */
export function apiClientFactory(ctx: Context, dispatcher?: Dispatcher): (flags?: ConnectFlags) => Promise<ApiClient> {
  const clients = new Map<string, Promise<ApiClient>>();
  return async (flags = {}) => {
    const connection = await resolveApiConnection(ctx, flags);
    const key = JSON.stringify(connection);
    let client = clients.get(key);
    if (!client) {
      client = import('./client.js').then(
        ({ ApiClient }) =>
          new ApiClient({
            ...connection,
            version: ctx.version,
            debug: (line) => ctx.ui.debug(line),
            sleep: (ms) => ctx.clock.sleep(ms, ctx.signal),
            signal: ctx.signal,
            ...(dispatcher ? { dispatcher } : {}),
          }),
      );
      clients.set(key, client);
    }
    return client;
  };
}

/**
 * Which project a command means: --project, $CYCLE_PROJECT, then the manifest's name. A caller
 * that has loaded the project passes it, so it is not loaded twice.
 */
export async function resolveProjectName(ctx: Context, flag: string | undefined, loaded?: Project): Promise<string> {
  const given = flag ?? (ctx.env.CYCLE_PROJECT || undefined);
  if (given !== undefined) {
    if (!PROJECT_NAME_PATTERN.test(given))
      throw new CycleError({ message: `invalid project name "${given}": expected ${PROJECT_NAME_RULE}`, exitCode: ExitCode.usage });
    return given;
  }
  let found = loaded;
  if (!found) {
    const located = await locateProject(ctx.cwd);
    if (located) found = await loadProject(located.root);
  }
  if (found?.name) return found.name;
  throw new CycleError({
    message: found ? 'the project has no name (computalot.project.json has no "name")' : 'no project named, and no project here',
    hint: 'pass --project NAME, set CYCLE_PROJECT, or run inside a project (its name comes from [main].name or "name")',
    exitCode: ExitCode.usage,
  });
}
