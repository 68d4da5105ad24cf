import type { Context } from '../context.js';
import { ExitCode } from '../errors.js';
import type { AccountOptions } from './account.command.js';

export async function balance(options: AccountOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const answer = await api.balance();
  if (options.json) {
    ctx.ui.json(answer);
    return ExitCode.ok;
  }
  const usd = (value: number | string | null | undefined): string => (value === undefined || value === null ? '?' : `$${Number(value).toFixed(2)}`);
  ctx.ui.out(`available  ${usd(answer.available_usd)}`);
  ctx.ui.out(`held       ${usd(answer.held_usd)}`);
  ctx.ui.out(`ledger     ${usd(answer.ledger_balance_usd)}`);
  return ExitCode.ok;
}

export const holds = (options: AccountOptions, ctx: Context): Promise<number> => entries('holds', options, ctx);
export const ledger = (options: AccountOptions, ctx: Context): Promise<number> => entries('ledger', options, ctx);

/** The entries as they came (--json), else one line each of their plain fields. */
async function entries(kind: 'holds' | 'ledger', options: AccountOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const list = await api.accountEntries(kind);
  if (options.json) ctx.ui.json(list);
  else if (list.length === 0) ctx.ui.info(`no ${kind === 'holds' ? 'holds' : 'ledger entries'}`);
  else
    for (const entry of list) {
      const fields = Object.entries(entry).filter(([, value]) => value !== null && typeof value !== 'object');
      ctx.ui.out(fields.map(([key, value]) => `${key}=${String(value)}`).join('  '));
    }
  return ExitCode.ok;
}
