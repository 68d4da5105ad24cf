import { hash as oneShotHash, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  machineActivitySchema,
  machineInventorySchema,
  machineName,
  type Machine,
  type MachineActivity,
  type MachineInventory,
  type MachineState,
} from '../../api/machines.js';
import { systemClock, type Clock } from '../../context.js';
import { type DB, parseJson, timestamp } from '../db.js';
import { DomainError, invalid, notFound, zodError } from '../errors.js';
import { newId } from '../ids.js';
import type { MachineAuth } from './auth.js';

/** What a machine token starts with: told apart from a user token (`cyc_`) at a glance, and by `authenticate`. */
export const MACHINE_TOKEN_PREFIX = 'cym_';
/** The most tasks one machine runs at once (`cycle daemon run --slots`). */
export const MAX_SLOTS = 64;

/** What the registry needs of the work queue (set after both exist: the queue also asks the registry). */
export interface MachineLeases {
  /** The tasks the machine runs now. */
  runningOn(name: string): Machine['running'];
  /** Why queued tasks are not placed on the machine (a few lines, each with a job id). */
  notPlacedOn(name: string, inventory: MachineInventory | null): NonNullable<Machine['not_placed']>;
  /** Ends the machine's leases: their tasks go back to the queue, the reason in their logs. */
  releaseMachine(name: string, reason: string): void;
}

/** A machine the queue may place tasks on (enrolled, not removed, with an inventory), online or not. */
export interface PlacementMachine {
  name: string;
  inventory: MachineInventory;
}

interface TokenRow {
  id: string;
  hash: string;
  name: string | null;
  created_at: string;
  revoked_at: string | null;
}

interface MachineRow {
  name: string;
  token_id: string;
  slots: number;
  inventory: string | null;
  activity: string | null;
  last_heartbeat_at: string | null;
  enrolled_at: string;
  draining: number;
}

export interface MachineRegistryOptions {
  db: DB;
  /** Heartbeat times are stamped and aged on it (tests advance a manual one). */
  clock?: Clock;
  /** A machine whose last heartbeat is older than this is offline: the lease life (30 s by default). */
  leaseMs: number;
  /** The work queue, once it exists. */
  leases?: () => MachineLeases | undefined;
}

/** The token's SHA-256 (one-shot: `createHash` cost a busy pool's server more than the lookup). */
function hashToken(token: string): Buffer {
  return oneShotHash('sha256', token, 'buffer');
}

/** A heartbeat that changes nothing but its time is stored at most this often (the time is kept in memory meanwhile). */
const HEARTBEAT_STORE_MS = 10_000;
/** Verified tokens, machine rows and heartbeats kept in memory at most, each (a cache: forgotten all at once past it, then read again). */
const MAX_KEPT = 10_000;

/**
 * The machines of the pool (issue 20): machine tokens (made here, shown once, stored as SHA-256
 * hashes, revocable), each enrolled machine's name, inventory, activity and last heartbeat, and
 * whether it may take work. The only writer of the `machine_tokens` and `machines` tables.
 */
export class MachineRegistry implements MachineAuth {
  private readonly clock: Clock;
  /**
   * Live tokens verified before, by their hash (hex): every request of a pool's daemons carries
   * one, and reading it from the database each time was ~5% of a busy pool's server. Only
   * tokens found live are kept; every write to a token (revoke, remove, the name bound at its
   * first heartbeat) drops its entry at once, in the same call, so a revoked token is refused on
   * its very next request. This server is the only writer of its tables (one server per data
   * folder, `server.lock`).
   */
  private readonly verified = new Map<string, { tokenId: string; name: string | undefined }>();
  /**
   * Enrolled machines' rows as stored, read once: every lease request asks whether its machine
   * may take work and how many slots it has. Every write to a row drops it here at once.
   */
  private readonly machineRows = new Map<string, MachineRow>();
  /**
   * Each machine's last heartbeat as it said it (the texts of its inventory and activity) and
   * when: a heartbeat that changes nothing but the time (200 machines, every 5 s) writes the time
   * only every HEARTBEAT_STORE_MS; reads take the time from here (`withBeat`), so `cycle machine
   * list` shows the last one. After a crash the stored time is at most that much older.
   */
  private readonly beats = new Map<string, { tokenId: string; slots: number; inventory: string; activity: string; at: string; storedAt: number }>();

  constructor(private readonly options: MachineRegistryOptions) {
    this.clock = options.clock ?? systemClock;
  }

  /** A fresh machine token (returned once; only its hash is kept). With a name, the token can enrol that machine only. */
  createToken(name?: string): { token: string; token_id: string; name: string | null } {
    if (name !== undefined) {
      checkName(name);
      const holder = this.liveTokenNamed(name);
      if (holder)
        throw new DomainError(
          'conflict',
          'machine_name_taken',
          `machine name "${name}" is already bound to machine token ${holder.id}: pick another --name, or free it with cycle machine remove ${name}`,
          'name',
        );
    }
    const token = `${MACHINE_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
    const id = newId('mtok');
    this.options.db
      .prepare('INSERT INTO machine_tokens (id, hash, name, created_at) VALUES (?, ?, ?, ?)')
      .run(id, hashToken(token).toString('hex'), name ?? null, timestamp(this.clock));
    return { token, token_id: id, name: name ?? null };
  }

  authenticate(token: string): { tokenId: string; name: string | undefined } | undefined {
    if (!token.startsWith(MACHINE_TOKEN_PREFIX)) return undefined;
    const hash = hashToken(token);
    const hex = hash.toString('hex');
    // Found by its hash (a lookup learns nothing of the token: it is 32 random bytes), in memory
    // or in the database, then compared in constant time all the same.
    const known = this.verified.get(hex);
    if (known) return { ...known };
    const row = this.options.db.prepare('SELECT * FROM machine_tokens WHERE hash = ? AND revoked_at IS NULL').get(hex) as TokenRow | undefined;
    if (!row || !timingSafeEqual(Buffer.from(row.hash, 'hex'), hash)) return undefined;
    const caller = { tokenId: row.id, name: row.name ?? undefined };
    if (this.verified.size >= MAX_KEPT) this.verified.clear();
    this.verified.set(hex, caller);
    return { ...caller };
  }

  /** Drops what `authenticate` keeps of a token: called by every write to its row, before the next request is read. */
  private forgetToken(tokenId: string): void {
    for (const [hex, caller] of this.verified) if (caller.tokenId === tokenId) this.verified.delete(hex);
    for (const [name, beat] of this.beats) if (beat.tokenId === tokenId) this.beats.delete(name);
  }

  /** The row with its last heartbeat's time (noted in memory, stored at most every HEARTBEAT_STORE_MS). */
  private withBeat(row: MachineRow): MachineRow {
    const beat = this.beats.get(row.name);
    if (beat && beat.tokenId === row.token_id) row.last_heartbeat_at = beat.at;
    return row;
  }

  heartbeat(tokenId: string, name: string, inventory: MachineInventory, activity: MachineActivity, slots: number): string {
    // The same machine saying the same as last time (the usual heartbeat): its time is noted in
    // memory, and stored at most every HEARTBEAT_STORE_MS. The checks below passed for these very
    // texts, from this live token (an entry goes with any write to its token or machine).
    const said = { inventory: JSON.stringify(inventory), activity: JSON.stringify(activity) };
    const beat = this.beats.get(name);
    if (beat && beat.tokenId === tokenId && beat.slots === slots && beat.inventory === said.inventory && beat.activity === said.activity) {
      beat.at = timestamp(this.clock);
      if (this.clock.now() - beat.storedAt >= HEARTBEAT_STORE_MS) {
        this.options.db.prepare('UPDATE machines SET last_heartbeat_at = ? WHERE name = ?').run(beat.at, name);
        beat.storedAt = this.clock.now();
      }
      return name;
    }
    this.beats.delete(name);
    checkName(name);
    if (!Number.isInteger(slots) || slots < 1 || slots > MAX_SLOTS)
      throw invalid('invalid_slots', `slots must be a whole number from 1 to ${MAX_SLOTS} (cycle daemon run --slots); got ${slots}`, 'slots');
    // What a machine sends is as untrusted as a push: checked here too, whatever its route checked.
    const checkedInventory = machineInventorySchema.safeParse(inventory);
    if (!checkedInventory.success) throw within('inventory', zodError(checkedInventory.error));
    const checkedActivity = machineActivitySchema.safeParse(activity);
    if (!checkedActivity.success) throw within('activity', zodError(checkedActivity.error));
    const { db } = this.options;
    const token = db.prepare('SELECT * FROM machine_tokens WHERE id = ? AND revoked_at IS NULL').get(tokenId) as TokenRow | undefined;
    if (!token)
      throw new DomainError('unauthorized', 'machine_token_revoked', 'this machine token was revoked: create a new one with cycle machine token create');
    if (token.name !== null && token.name !== name)
      throw new DomainError(
        'conflict',
        'machine_name_bound',
        `this machine token belongs to machine "${token.name}", not "${name}": run cycle daemon run --name ${token.name}, or create a token for "${name}"`,
        'name',
      );
    const existing = this.row(name);
    if (existing && existing.token_id !== tokenId)
      throw new DomainError(
        'conflict',
        'machine_name_taken',
        `machine name "${name}" is held by another machine token (enrolled ${existing.enrolled_at}): pick another --name, or remove it first with cycle machine remove ${name}`,
        'name',
      );
    const other = this.liveTokenNamed(name);
    if (other && other.id !== tokenId)
      throw new DomainError(
        'conflict',
        'machine_name_taken',
        `machine name "${name}" is bound to another machine token (${other.id}): pick another --name`,
        'name',
      );
    const at = timestamp(this.clock);
    if (token.name === null) this.forgetToken(tokenId); // its name is bound below
    db.transaction(() => {
      if (token.name === null) db.prepare('UPDATE machine_tokens SET name = ? WHERE id = ?').run(name, tokenId);
      db.prepare(
        `INSERT INTO machines (name, token_id, slots, inventory, activity, last_heartbeat_at, enrolled_at) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET slots = excluded.slots, inventory = excluded.inventory, activity = excluded.activity, last_heartbeat_at = excluded.last_heartbeat_at`,
      ).run(name, tokenId, slots, JSON.stringify(checkedInventory.data), JSON.stringify(checkedActivity.data), at, at);
    })();
    this.machineRows.delete(name);
    if (this.beats.size >= MAX_KEPT) this.beats.clear();
    this.beats.set(name, { tokenId, slots, ...said, at, storedAt: this.clock.now() });
    return name;
  }

  draining(name: string): boolean {
    return this.row(name)?.draining === 1;
  }

  mayTakeWork(name: string): { ok: true } | { ok: false; reason: string } {
    const row = this.row(name);
    if (!row) return { ok: false, reason: `machine ${name} is not enrolled (it was removed, or has sent no heartbeat yet)` };
    if (row.draining) return { ok: false, reason: `machine ${name} is draining (cycle machine drain): it finishes what it runs and takes nothing new` };
    const activity = parseJson<MachineActivity | null>(row.activity, null);
    if (activity && this.pausedNow(activity))
      return { ok: false, reason: `machine ${name} is paused until ${activity.paused_until} (cycle daemon resume ends it)` };
    if (activity && !activity.idle && activity.forbid_busy_assign)
      return { ok: false, reason: `machine ${name} is busy (${activity.busy_reasons.join('; ') || 'not idle'}) and forbids assignment while busy` };
    return { ok: true };
  }

  slotsOf(name: string): number | undefined {
    return this.row(name)?.slots;
  }

  /** Every enrolled machine, by name. */
  list(): Machine[] {
    const rows = this.options.db.prepare('SELECT * FROM machines ORDER BY name').all() as MachineRow[];
    return rows.map((row) => this.document(this.withBeat(row)));
  }

  /** One machine; a 404 naming the known ones when it is not enrolled. */
  show(name: string): Machine {
    return this.document(this.require(name));
  }

  /** Drain (on: finish what runs, take nothing new) or undrain it. */
  drain(name: string, on: boolean): Machine {
    this.require(name);
    this.machineRows.delete(name);
    this.options.db.prepare('UPDATE machines SET draining = ? WHERE name = ?').run(on ? 1 : 0, name);
    return this.show(name);
  }

  /** Removes a machine: its token is revoked, its leases end (their tasks go back to the queue). A name only bound to a token not used yet: that token is revoked. */
  remove(name: string): { name: string; removed: true } {
    const unused = this.row(name) ? undefined : this.liveTokenNamed(name);
    if (unused) {
      this.revokeToken(unused.id);
      return { name, removed: true };
    }
    const row = this.require(name);
    const { db } = this.options;
    this.forgetToken(row.token_id);
    db.transaction(() => {
      db.prepare('UPDATE machine_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(timestamp(this.clock), row.token_id);
      db.prepare('DELETE FROM machines WHERE name = ?').run(name);
    })();
    this.machineRows.delete(name);
    this.options.leases?.()?.releaseMachine(name, `machine ${name} was removed`);
    return { name, removed: true };
  }

  /** Revokes a machine token by its id (`token_id`); the machine that enrolled with it, if any, is removed. */
  revokeToken(tokenId: string): { token_id: string; revoked: true } {
    const { db } = this.options;
    const token = db.prepare('SELECT * FROM machine_tokens WHERE id = ?').get(tokenId) as TokenRow | undefined;
    if (!token) throw notFound(`no machine token ${tokenId} (cycle machine token create printed its id with --json)`, 'token_id');
    const machine = db.prepare('SELECT name FROM machines WHERE token_id = ?').get(tokenId) as { name: string } | undefined;
    this.forgetToken(tokenId);
    if (machine) this.remove(machine.name);
    else db.prepare('UPDATE machine_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(timestamp(this.clock), tokenId);
    return { token_id: tokenId, revoked: true };
  }

  /** The machines a task may be placed on: enrolled (online or not) and with a reported inventory. */
  placementMachines(): PlacementMachine[] {
    const rows = this.options.db.prepare('SELECT name, inventory FROM machines WHERE inventory IS NOT NULL ORDER BY name').all() as Array<{
      name: string;
      inventory: string;
    }>;
    return rows.flatMap((row) => {
      const inventory = parseJson<MachineInventory | null>(row.inventory, null);
      return inventory ? [{ name: row.name, inventory }] : [];
    });
  }

  /** Whether an enrolled machine has a GPU (a GPU job is accepted though this server has none). */
  anyGpu(): boolean {
    return this.placementMachines().some((m) => m.inventory.gpus.length > 0 && !m.inventory.gpu_problem);
  }

  private document(row: MachineRow): Machine {
    const inventory = parseJson<MachineInventory | null>(row.inventory, null);
    const activity = parseJson<MachineActivity | null>(row.activity, null);
    const leases = this.options.leases?.();
    const running = leases?.runningOn(row.name) ?? [];
    return {
      name: row.name,
      state: this.state(row, activity, running.length),
      slots: row.slots,
      running,
      inventory,
      activity,
      last_heartbeat_at: row.last_heartbeat_at,
      enrolled_at: row.enrolled_at,
      draining: row.draining === 1,
      not_placed: leases?.notPlacedOn(row.name, inventory) ?? [],
    };
  }

  /** offline > draining > paused > busy (running a task, or not idle) > idle. */
  private state(row: MachineRow, activity: MachineActivity | null, running: number): MachineState {
    if (this.offline(row)) return 'offline';
    if (row.draining) return 'draining';
    if (activity && this.pausedNow(activity)) return 'paused';
    if (running > 0 || (activity && !activity.idle)) return 'busy';
    return 'idle';
  }

  /** No heartbeat within a lease's life. */
  private offline(row: MachineRow): boolean {
    const heartbeat = row.last_heartbeat_at ? Date.parse(row.last_heartbeat_at) : Number.NaN;
    return !(this.clock.now() - heartbeat <= this.options.leaseMs);
  }

  /** Why a machine that could run a task is not running it now: offline, or `mayTakeWork`'s reason; undefined when it may take work. */
  whyIdleNow(name: string): string | undefined {
    const row = this.row(name);
    if (row && this.offline(row)) return `machine ${name} is offline (last heartbeat ${row.last_heartbeat_at ?? 'never'})`;
    const may = this.mayTakeWork(name);
    return may.ok ? undefined : may.reason;
  }

  private pausedNow(activity: MachineActivity): boolean {
    return activity.paused_until !== null && Date.parse(activity.paused_until) > this.clock.now();
  }

  /** An enrolled machine's row (a copy: the caller may change it), from memory after the first read. */
  private row(name: string): MachineRow | undefined {
    let row = this.machineRows.get(name);
    if (!row) {
      row = this.options.db.prepare('SELECT * FROM machines WHERE name = ?').get(name) as MachineRow | undefined;
      if (!row) return undefined;
      if (this.machineRows.size >= MAX_KEPT) this.machineRows.clear();
      this.machineRows.set(name, row);
    }
    return this.withBeat({ ...row });
  }

  private require(name: string): MachineRow {
    const row = this.row(name);
    if (row) return row;
    const known = (this.options.db.prepare('SELECT name FROM machines ORDER BY name').all() as Array<{ name: string }>).map((r) => r.name);
    throw notFound(
      `no machine "${name}" is enrolled (${known.length ? `enrolled: ${known.join(', ')}` : 'none is: cycle machine token create, then cycle daemon run on the machine'})`,
      'name',
    );
  }

  private liveTokenNamed(name: string): TokenRow | undefined {
    return this.options.db.prepare('SELECT * FROM machine_tokens WHERE name = ? AND revoked_at IS NULL').get(name) as TokenRow | undefined;
  }
}

function checkName(name: string): void {
  const parsed = machineName.safeParse(name);
  if (!parsed.success)
    throw invalid('invalid_machine_name', `invalid machine name "${name.slice(0, 80)}": ${parsed.error.issues[0]?.message ?? 'bad name'}`, 'name');
}

/** A refused part of a heartbeat, named as the field the daemon sends it in. */
function within(part: string, error: DomainError): DomainError {
  return new DomainError(error.kind, error.code, `${part}: ${error.message}`, error.field ? `${part}.${error.field}` : part);
}
