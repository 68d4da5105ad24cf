import type { Context } from '../context.js';
import { readAll } from '../ui/streams.js';
import { CycleError, ExitCode, usageError } from '../errors.js';
import { credentialsPath, describeSource, normalizeApiUrl, removeToken, resolveApiSettings, saveToken, saveUserApiUrl } from '../config/config.js';
import type { LoginOptions, StatusOptions, LogoutOptions } from './auth.command.js';

/** `cycle auth login`: the token from a hidden prompt, or stdin with --with-token; checked, then saved 0600. */
export async function login(options: LoginOptions, ctx: Context): Promise<number> {
  const settings = await resolveApiSettings({ env: ctx.env, configDir: ctx.configDir }, options.apiUrl ? { apiUrl: options.apiUrl } : {});
  const apiUrl = settings.apiUrl;
  if (!apiUrl) throw usageError('which server? no API URL is set', 'pass --api-url URL (e.g. the one `cycle server` prints)');
  let token: string;
  if (options.withToken) {
    token = (await readAll(ctx.io.stdin)).trim();
  } else if (ctx.prompt.available) {
    token = (await ctx.prompt.secret(`Token for ${apiUrl}`)).trim();
  } else {
    throw usageError('no terminal to ask for the token', 'pipe it in: cycle auth login --with-token < token-file');
  }
  if (token === '' || /\s/.test(token)) throw usageError('the token is empty or has spaces in it', 'pass the token alone on stdin, or type it at the prompt');
  const { ApiClient } = await import('../api/client.js');
  const api = new ApiClient({ baseUrl: apiUrl, token, version: ctx.version, attempts: 2, debug: (line) => ctx.ui.debug(line) });
  try {
    await api.checkToken();
  } finally {
    await api.close();
  }
  const file = await saveToken(ctx.configDir, apiUrl, token, new Date(ctx.clock.now()));
  if (options.apiUrl) await saveUserApiUrl(ctx.configDir, normalizeApiUrl(options.apiUrl));
  ctx.ui.success(`logged in to ${apiUrl} (token saved in ${file}, readable by you only)`);
  if (ctx.env.CYCLE_TOKEN) ctx.ui.warn('CYCLE_TOKEN is set in the environment: it takes precedence over the saved token');
  return ExitCode.ok;
}

/** `cycle auth status`: which server, where the token comes from, and whether the server accepts it. Never the token. */
export async function status(options: StatusOptions, ctx: Context): Promise<number> {
  const settings = await resolveApiSettings({ env: ctx.env, configDir: ctx.configDir }, options.apiUrl ? { apiUrl: options.apiUrl } : {});
  let accepted: boolean | null = null;
  let problem: string | null = null;
  if (settings.apiUrl && settings.token) {
    const { ApiClient } = await import('../api/client.js');
    const api = new ApiClient({ baseUrl: settings.apiUrl, token: settings.token, version: ctx.version, attempts: 2, debug: (line) => ctx.ui.debug(line) });
    try {
      await api.checkToken();
      accepted = true;
    } catch (error) {
      accepted = false;
      problem = error instanceof CycleError ? error.message : String(error);
      if (error instanceof CycleError && error.exitCode === ExitCode.network) accepted = null;
    } finally {
      await api.close();
    }
  }
  const doc = {
    api_url: settings.apiUrl ?? null,
    api_url_source: settings.apiUrlSource ?? null,
    token_set: settings.token !== undefined,
    token_source: settings.tokenSource ?? null,
    accepted,
    problem,
  };
  if (options.json) ctx.ui.json(doc);
  else {
    ctx.ui.out(`server  ${settings.apiUrl ?? 'not set'}${settings.apiUrl ? ` (${describeSource(settings.apiUrlSource)})` : ''}`);
    ctx.ui.out(`token   ${settings.token ? `set (${describeSource(settings.tokenSource)})` : 'not set'}`);
    if (accepted === true) ctx.ui.out(`status  ${ctx.ui.c.green('logged in')}: the server accepts the token`);
    else if (accepted === false) ctx.ui.out(`status  ${ctx.ui.c.red('refused')}: ${problem}`);
    else if (problem) ctx.ui.out(`status  unknown: ${problem}`);
  }
  if (!settings.token || accepted === false) return ExitCode.auth;
  if (accepted === null && problem) return ExitCode.network;
  return settings.apiUrl ? ExitCode.ok : ExitCode.auth;
}

/** `cycle auth logout`: forget the saved token of the server. */
export async function logout(options: LogoutOptions, ctx: Context): Promise<number> {
  const settings = await resolveApiSettings(
    { env: { ...ctx.env, CYCLE_TOKEN: undefined }, configDir: ctx.configDir },
    options.apiUrl ? { apiUrl: options.apiUrl } : {},
  );
  if (!settings.apiUrl) throw usageError('which server? no API URL is set', 'pass --api-url URL');
  const removed = await removeToken(ctx.configDir, settings.apiUrl);
  if (removed) ctx.ui.success(`logged out of ${settings.apiUrl} (token removed from ${credentialsPath(ctx.configDir)})`);
  else ctx.ui.info(`no saved token for ${settings.apiUrl}`);
  if (ctx.env.CYCLE_TOKEN) ctx.ui.warn('CYCLE_TOKEN is still set in the environment: unset it to log out fully');
  return ExitCode.ok;
}
