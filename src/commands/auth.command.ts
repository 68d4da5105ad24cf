import { defineCommand, flag, type OptionsFrom } from './declaration.js';
import { apiUrlFlag, jsonFlag } from './shared-flags.js';

const loginFlags = { ...apiUrlFlag, withToken: flag.boolean('--with-token', 'read the token from stdin') };
export type LoginOptions = OptionsFrom<{}, typeof loginFlags>;
const statusFlags = { ...apiUrlFlag, ...jsonFlag };
export type StatusOptions = OptionsFrom<{}, typeof statusFlags>;
const logoutFlags = { ...apiUrlFlag };
export type LogoutOptions = OptionsFrom<{}, typeof logoutFlags>;

export const login = defineCommand({
  name: 'login',
  summary: 'save a token for the server (asked without echo, or read from stdin)',
  args: {},
  flags: loginFlags,
  notes: 'The token is checked against the server, then saved (mode 0600) in $XDG_CONFIG_HOME/cycle/credentials.json.',
  examples: [
    'cycle auth login --api-url http://127.0.0.1:8787',
    'cycle auth login --api-url http://127.0.0.1:8787 --with-token < ~/.local/share/cycle/server/token',
  ],
  load: async () => ({ run: (await import('./auth.js')).login }),
});

export const status = defineCommand({
  name: 'status',
  summary: 'which server, where the token comes from, and whether the server accepts it (never the token)',
  args: {},
  flags: statusFlags,
  notes: 'Exit status 4 when there is no token or the server refuses it.',
  examples: ['cycle auth status', 'cycle auth status --json'],
  load: async () => ({ run: (await import('./auth.js')).status }),
});

export const logout = defineCommand({
  name: 'logout',
  summary: 'forget the saved token of the server',
  args: {},
  flags: logoutFlags,
  examples: ['cycle auth logout'],
  load: async () => ({ run: (await import('./auth.js')).logout }),
});
