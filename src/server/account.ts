import type { Clock } from '../context.js';
import { timestamp, type DB } from './db.js';
import { paymentRequired } from './errors.js';
import { newId } from './ids.js';

/**
 * The account's money, as Computalot's Billing page shows it: a ledger, holds placed when a job
 * is submitted (its quote: tasks × timeout × price per task-second) and settled when it ends
 * (the tasks' actual seconds charged, at most the hold; the rest released). The opening balance
 * is the operator's `--balance` (unlimited unless set: then no submit is ever refused, and the
 * balance fields are null).
 */
export interface AccountOptions {
  db: DB;
  /** Where stored timestamps come from (the system's clock unless set). */
  clock?: Clock;
  /** Dollars at the start (the ledger's charges are taken from it); Infinity: unlimited. */
  openingBalanceUsd: number;
  /** Dollars per second of a task's run time. */
  pricePerTaskSecondUsd: number;
  /** The timeout a quote assumes for a job that gives none. */
  defaultQuoteTimeoutS: number;
}

/** $0.36 per task-hour: an arbitrary local price, so that holds and charges show real numbers. */
export const DEFAULT_PRICE_PER_TASK_SECOND_USD = 0.0001;

/** A job without timeout_s is quoted as if each task ran an hour. */
export const DEFAULT_QUOTE_TIMEOUT_S = 3600;

/** Computalot's minimum available balance for `POST /projects/:name/init`. */
export const INIT_MINIMUM_USD = 5;

export interface Quote {
  id: string;
  purpose: 'job' | 'init';
  project: string | null;
  job_id: string | null;
  tasks: number;
  timeout_s: number;
  price_per_task_second_usd: number;
  required_usd: number;
  available_usd: number | null;
  shortfall_usd: number;
  outcome: 'held' | 'refused' | 'ok';
  created_at: string;
}

type QuoteRow = Omit<Quote, 'price_per_task_second_usd'>;

interface HoldRow {
  id: string;
  job_id: string | null;
  amount_usd: number;
  state: 'held' | 'settled' | 'released';
  charged_usd: number | null;
  created_at: string;
  settled_at: string | null;
}

/** Money in cents-and-beyond precision: no float noise (0.1 + 0.2) in answers. */
const usd = (value: number): number => Math.round(value * 1e6) / 1e6;

export class Account {
  constructor(private readonly options: AccountOptions) {}

  private get unlimited(): boolean {
    return !Number.isFinite(this.options.openingBalanceUsd);
  }

  /** `GET /api/v1/account/balance`. */
  balance(): {
    ledger_balance_usd: number | null;
    held_usd: number;
    available_usd: number | null;
    unlimited: boolean;
    currency: 'USD';
    price_per_task_second_usd: number;
  } {
    const { db } = this.options;
    const charged = (db.prepare('SELECT COALESCE(SUM(amount_usd), 0) AS total FROM ledger').get() as { total: number }).total;
    const held = usd((db.prepare("SELECT COALESCE(SUM(amount_usd), 0) AS total FROM holds WHERE state = 'held'").get() as { total: number }).total);
    const ledger = this.unlimited ? null : usd(this.options.openingBalanceUsd + charged);
    return {
      ledger_balance_usd: ledger,
      held_usd: held,
      available_usd: ledger === null ? null : usd(ledger - held),
      unlimited: this.unlimited,
      currency: 'USD',
      price_per_task_second_usd: this.options.pricePerTaskSecondUsd,
    };
  }

  /**
   * Places the hold for a job about to be inserted (`attach` names the job once it has an id).
   * Not enough available: a 402 with the quote, nothing held (the same request can be retried
   * after funding).
   */
  hold(project: string, tasks: number, timeoutS: number | undefined): { quote: Quote; holdId: string } {
    const { db } = this.options;
    const timeout = timeoutS ?? this.options.defaultQuoteTimeoutS;
    // One transaction: two submits cannot both count the same available dollars.
    const outcome = db.transaction(() => {
      const quote = this.quote('job', project, tasks, timeout, this.options.pricePerTaskSecondUsd * tasks * timeout);
      if (quote.shortfall_usd > 0) return { quote: { ...quote, outcome: 'refused' as const } };
      const holdId = newId('hold');
      db.prepare("INSERT INTO holds (id, job_id, amount_usd, state, created_at) VALUES (?, NULL, ?, 'held', ?)").run(
        holdId,
        quote.required_usd,
        timestamp(this.options.clock),
      );
      this.saveQuote({ ...quote, outcome: 'held' });
      return { quote: { ...quote, outcome: 'held' as const }, holdId };
    })();
    if (outcome.holdId === undefined) {
      const { quote } = outcome;
      this.saveQuote(quote);
      throw paymentRequired(
        `the job's hold of $${quote.required_usd.toFixed(2)} (${tasks} task(s) × ${timeout} s × $${this.options.pricePerTaskSecondUsd}/task-second) is more than the $${(quote.available_usd ?? 0).toFixed(2)} available: fund the account (cycle server --balance) or lower timeout_s, then retry the same request`,
        quote,
      );
    }
    return { quote: outcome.quote, holdId: outcome.holdId };
  }

  attach(holdId: string, quoteId: string, jobId: string): void {
    this.options.db.prepare('UPDATE holds SET job_id = ? WHERE id = ?').run(jobId, holdId);
    this.options.db.prepare('UPDATE quotes SET job_id = ? WHERE id = ?').run(jobId, quoteId);
  }

  /** A hold whose job was never inserted (the insert failed). */
  release(holdId: string): void {
    this.options.db
      .prepare("UPDATE holds SET state = 'released', charged_usd = 0, settled_at = ? WHERE id = ? AND state = 'held'")
      .run(timestamp(this.options.clock), holdId);
  }

  /** `init` is free but needs $5 available (Computalot's Project Setup page): else 402 with a quote. */
  checkInit(project: string): void {
    const quote = this.quote('init', project, 0, 0, INIT_MINIMUM_USD);
    if (quote.shortfall_usd > 0) {
      this.saveQuote({ ...quote, outcome: 'refused' });
      throw paymentRequired(
        `init needs at least $${INIT_MINIMUM_USD} of available balance; this server has $${(quote.available_usd ?? 0).toFixed(2)}: start it with a higher --balance and retry`,
        { ...quote, outcome: 'refused' },
      );
    }
  }

  /** At a job's end: its tasks' run time charged (at most the hold), the rest released. */
  settle(jobId: string): void {
    const { db } = this.options;
    db.transaction(() => {
      const hold = db.prepare("SELECT * FROM holds WHERE job_id = ? AND state = 'held'").get(jobId) as HoldRow | undefined;
      if (!hold) return;
      const seconds = (
        db
          .prepare(
            'SELECT COALESCE(SUM((julianday(finished_at) - julianday(started_at)) * 86400), 0) AS s FROM tasks WHERE job_id = ? AND started_at IS NOT NULL AND finished_at IS NOT NULL',
          )
          .get(jobId) as { s: number }
      ).s;
      const charge = usd(Math.min(hold.amount_usd, seconds * this.options.pricePerTaskSecondUsd));
      db.prepare("UPDATE holds SET state = 'settled', charged_usd = ?, settled_at = ? WHERE id = ?").run(charge, timestamp(this.options.clock), hold.id);
      if (charge > 0)
        db.prepare("INSERT INTO ledger (kind, amount_usd, job_id, description, created_at) VALUES ('charge', ?, ?, ?, ?)").run(
          -charge,
          jobId,
          `job ${jobId}: ${usd(seconds)} task-second(s)`,
          timestamp(this.options.clock),
        );
    })();
  }

  holds(): HoldRow[] {
    return this.options.db.prepare('SELECT * FROM holds ORDER BY created_at DESC, id DESC LIMIT 1000').all() as HoldRow[];
  }

  ledger(): {
    opening_balance_usd: number | null;
    entries: Array<{ id: number; kind: string; amount_usd: number; job_id: string | null; description: string; created_at: string }>;
  } {
    const entries = this.options.db
      .prepare('SELECT seq AS id, kind, amount_usd, job_id, description, created_at FROM ledger ORDER BY seq DESC LIMIT 1000')
      .all() as Array<{ id: number; kind: string; amount_usd: number; job_id: string | null; description: string; created_at: string }>;
    return { opening_balance_usd: this.unlimited ? null : this.options.openingBalanceUsd, entries };
  }

  quotes(): Quote[] {
    const rows = this.options.db.prepare('SELECT * FROM quotes ORDER BY created_at DESC, id DESC LIMIT 1000').all() as QuoteRow[];
    return rows.map((row) => ({ ...row, price_per_task_second_usd: this.options.pricePerTaskSecondUsd }));
  }

  private quote(purpose: Quote['purpose'], project: string, tasks: number, timeoutS: number, requiredUsd: number): Quote {
    const available = this.balance().available_usd;
    const required = usd(requiredUsd);
    return {
      id: newId('quote'),
      purpose,
      project,
      job_id: null,
      tasks,
      timeout_s: timeoutS,
      price_per_task_second_usd: this.options.pricePerTaskSecondUsd,
      required_usd: required,
      available_usd: available,
      shortfall_usd: available === null ? 0 : usd(Math.max(0, required - available)),
      outcome: 'ok',
      created_at: timestamp(this.options.clock),
    };
  }

  private saveQuote(quote: Quote): void {
    this.options.db
      .prepare(
        'INSERT INTO quotes (id, purpose, project, job_id, tasks, timeout_s, required_usd, available_usd, shortfall_usd, outcome, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(
        quote.id,
        quote.purpose,
        quote.project,
        quote.job_id,
        quote.tasks,
        quote.timeout_s,
        quote.required_usd,
        quote.available_usd,
        quote.shortfall_usd,
        quote.outcome,
        quote.created_at,
      );
  }
}
