import fs from 'node:fs/promises';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { CycleError, ExitCode } from '../errors.js';
import type { Env } from '../ui/streams.js';
import { readJsonFile, writeFileAtomic } from '../util/fs.js';
import { statePaths } from '../project/state.js';

export type Source = 'flag' | 'env' | 'project' | 'user' | 'credentials';

export interface ApiSettings {
  apiUrl: string | undefined;
  apiUrlSource: Source | undefined;
  token: string | undefined;
  tokenSource: Source | undefined;
  /** Why CYCLE_TOKEN was not used for apiUrl (a project's config chose the URL), with the fix. */
  tokenWithheld?: { message: string; hint: string };
}

export interface ConfigLocation {
  env: Env;
  configDir: string;
  /** The project root, when the command runs inside a project. */
  projectRoot?: string;
}

interface ConfigFile {
  api_url?: string;
  project?: string;
}

interface CredentialsFile {
  hosts: Record<string, { token: string; saved_at?: string }>;
}

export function userConfigPath(configDir: string): string {
  return path.join(configDir, 'config.toml');
}

export function credentialsPath(configDir: string): string {
  return path.join(configDir, 'credentials.json');
}

async function readToml(file: string): Promise<ConfigFile | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    return parseToml(text) as ConfigFile;
  } catch (error) {
    throw new CycleError({
      message: `cannot read ${file}: ${(error as Error).message.split('\n')[0]}`,
      hint: 'fix the TOML or delete the file',
      exitCode: ExitCode.usage,
    });
  }
}

export function normalizeApiUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CycleError({ message: `invalid API URL ${JSON.stringify(url)}`, hint: 'use a full URL such as http://127.0.0.1:8787', exitCode: ExitCode.usage });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new CycleError({ message: `invalid API URL ${JSON.stringify(url)}: expected http:// or https://`, exitCode: ExitCode.usage });
  }
  return parsed.toString().replace(/\/+$/, '');
}

/** Flags > environment > project config > user config; the token from env or the credentials file. */
export async function resolveApiSettings(location: ConfigLocation, flags: { apiUrl?: string } = {}): Promise<ApiSettings> {
  let apiUrl: string | undefined;
  let apiUrlSource: Source | undefined;
  const project = location.projectRoot ? await readToml(statePaths.config(location.projectRoot)) : undefined;
  const user = await readToml(userConfigPath(location.configDir));
  const candidates: Array<[string | undefined, Source]> = [
    [flags.apiUrl, 'flag'],
    [location.env.CYCLE_API_URL, 'env'],
    [project?.api_url, 'project'],
    [user?.api_url, 'user'],
  ];
  for (const [value, source] of candidates) {
    if (value !== undefined && value !== '') {
      apiUrl = normalizeApiUrl(value);
      apiUrlSource = source;
      break;
    }
  }
  let token: string | undefined;
  let tokenSource: Source | undefined;
  let tokenWithheld: ApiSettings['tokenWithheld'];
  // A token goes only to the server it was given for. CYCLE_TOKEN is for the URL of --api-url,
  // CYCLE_API_URL or the user config; a project's .cycle/config.toml (which a cloned repository
  // brings) cannot send it elsewhere. Saved tokens are keyed by their exact URL already.
  const envTokenFits = apiUrlSource !== 'project' || (user?.api_url !== undefined && user.api_url !== '' && normalizeApiUrl(user.api_url) === apiUrl);
  if (location.env.CYCLE_TOKEN && envTokenFits) {
    token = location.env.CYCLE_TOKEN;
    tokenSource = 'env';
  } else if (apiUrl) {
    const credentials = await readJsonFile<CredentialsFile>(credentialsPath(location.configDir));
    const saved = credentials?.hosts?.[apiUrl]?.token;
    if (saved) {
      token = saved;
      tokenSource = 'credentials';
    }
  }
  if (!token && location.env.CYCLE_TOKEN && apiUrl && location.projectRoot) {
    tokenWithheld = {
      message: `CYCLE_TOKEN is not sent to ${apiUrl}: that URL comes from ${statePaths.config(location.projectRoot)}, and a project's config cannot choose where your token goes`,
      hint: `if you trust ${apiUrl}, say so yourself: pass --api-url ${apiUrl}, set CYCLE_API_URL=${apiUrl}, or run \`cycle auth login --api-url ${apiUrl}\`; otherwise remove api_url from that file`,
    };
  }
  return { apiUrl, apiUrlSource, token, tokenSource, ...(tokenWithheld ? { tokenWithheld } : {}) };
}

export async function saveToken(configDir: string, apiUrl: string, token: string, now: Date): Promise<string> {
  const file = credentialsPath(configDir);
  const current = (await readJsonFile<CredentialsFile>(file)) ?? { hosts: {} };
  current.hosts ??= {};
  current.hosts[apiUrl] = { token, saved_at: now.toISOString() };
  await fs.mkdir(configDir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, JSON.stringify(current, null, 2) + '\n', 0o600);
  return file;
}

export async function removeToken(configDir: string, apiUrl: string): Promise<boolean> {
  const file = credentialsPath(configDir);
  const current = await readJsonFile<CredentialsFile>(file);
  if (!current?.hosts?.[apiUrl]) return false;
  delete current.hosts[apiUrl];
  await writeFileAtomic(file, JSON.stringify(current, null, 2) + '\n', 0o600);
  return true;
}

export async function saveUserApiUrl(configDir: string, apiUrl: string): Promise<void> {
  const file = userConfigPath(configDir);
  let text = '';
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    text = '';
  }
  const line = `api_url = ${JSON.stringify(apiUrl)}`;
  text = /^api_url\s*=.*$/m.test(text) ? text.replace(/^api_url\s*=.*$/m, line) : `${line}\n${text}`;
  await fs.mkdir(configDir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, text.endsWith('\n') ? text : text + '\n');
}

/** Describes where a setting came from, for `doctor` and `auth status`. */
export function describeSource(source: Source | undefined): string {
  switch (source) {
    case 'flag':
      return 'from the command line';
    case 'env':
      return 'from the environment';
    case 'project':
      return 'from .cycle/config.toml';
    case 'user':
      return 'from the user config';
    case 'credentials':
      return 'from the credentials file';
    default:
      return 'not set';
  }
}
