import { defineCommand, type OptionsFrom } from './declaration.js';
import { apiUrlFlag, jsonFlag } from './shared-flags.js';

const accountFlags = { ...apiUrlFlag, ...jsonFlag };
export type AccountOptions = OptionsFrom<{}, typeof accountFlags>;

export const balance = defineCommand({
  name: 'balance',
  summary: "the account's money: ledger balance, held by running jobs, available",
  args: {},
  flags: accountFlags,
  notes: 'A job submitted places a hold; below what a job needs, the server answers 402 (exit 7).',
  examples: ['cycle account balance', 'cycle account balance --json | jq .available_usd'],
  load: async () => ({ run: (await import('./account.js')).balance }),
});

export const holds = defineCommand({
  name: 'holds',
  summary: 'the holds placed by jobs not yet settled',
  args: {},
  flags: accountFlags,
  examples: ['cycle account holds --json'],
  load: async () => ({ run: (await import('./account.js')).holds }),
});

export const ledger = defineCommand({
  name: 'ledger',
  summary: "the account's ledger: charges and payments",
  args: {},
  flags: accountFlags,
  examples: ['cycle account ledger'],
  load: async () => ({ run: (await import('./account.js')).ledger }),
});
