import { createHash, timingSafeEqual } from 'node:crypto';
import type { MachineActivity, MachineInventory } from '../../api/machines.js';
import { DomainError } from '../errors.js';

/**
 * What the machine routes (`/api/v1/machine/...`, src/server/http/daemon-routes.ts) ask of the
 * machine registry: who a machine token belongs to, its heartbeat, and whether it may take work.
 * The registry (src/server/machines/registry.ts: tokens stored hashed, states, drain) implements
 * it; `InMemoryMachineAuth` below is a small one for tests and for a server without a registry.
 */
export interface MachineAuth {
  /** The enrolled machine a bearer token belongs to (undefined: not a machine token, or revoked). */
  authenticate(token: string): { tokenId: string; name: string | undefined } | undefined;
  /** A daemon says who it is and what it has; records the heartbeat. Returns the machine's name. Throws a DomainError (conflict) for a name held by another token. */
  heartbeat(tokenId: string, name: string, inventory: MachineInventory, activity: MachineActivity, slots: number): string;
  /** Whether the machine may be offered new work now, and why not. */
  mayTakeWork(name: string): { ok: true } | { ok: false; reason: string };
  /** Whether the machine is drained (`cycle machine drain`): its daemon shows it in `cycle daemon status`. */
  draining(name: string): boolean;
}

/**
 * Machine tokens kept in memory (their sha256 only), each enrolling one machine name: the first
 * heartbeat names it, and a name stays with its token. For tests and the in-process wiring
 * until the registry (with its database tables) takes over.
 */
export class InMemoryMachineAuth implements MachineAuth {
  private readonly tokens = new Map<string, { tokenId: string; hash: Buffer; name: string | undefined; revoked: boolean }>();
  private readonly refusals = new Map<string, string>();
  readonly heartbeats: Array<{ name: string; inventory: MachineInventory; activity: MachineActivity; slots: number }> = [];

  /** Adds a token (as `cycle machine token create` would), optionally bound to a name already. */
  add(tokenId: string, token: string, name?: string): void {
    this.tokens.set(tokenId, { tokenId, hash: digest(token), name, revoked: false });
  }

  revoke(tokenId: string): void {
    const entry = this.tokens.get(tokenId);
    if (entry) entry.revoked = true;
  }

  /** Makes `mayTakeWork(name)` say no (a drain), or yes again with undefined. */
  refuse(name: string, reason: string | undefined): void {
    if (reason === undefined) this.refusals.delete(name);
    else this.refusals.set(name, reason);
  }

  draining(name: string): boolean {
    return this.refusals.has(name);
  }

  authenticate(token: string): { tokenId: string; name: string | undefined } | undefined {
    const given = digest(token);
    for (const entry of this.tokens.values()) if (!entry.revoked && timingSafeEqual(entry.hash, given)) return { tokenId: entry.tokenId, name: entry.name };
    return undefined;
  }

  heartbeat(tokenId: string, name: string, inventory: MachineInventory, activity: MachineActivity, slots: number): string {
    const entry = this.tokens.get(tokenId);
    if (!entry || entry.revoked) throw new DomainError('unauthorized', 'unauthorized', 'the machine token was revoked');
    for (const other of this.tokens.values())
      if (other !== entry && other.name === name)
        throw new DomainError('conflict', 'machine_name_taken', `the machine name "${name}" belongs to another machine token: pick another --name`, 'name');
    if (entry.name !== undefined && entry.name !== name)
      throw new DomainError('conflict', 'machine_name_taken', `this machine token enrolled "${entry.name}": run the daemon with --name ${entry.name}`, 'name');
    entry.name = name;
    this.heartbeats.push({ name, inventory, activity, slots });
    return name;
  }

  mayTakeWork(name: string): { ok: true } | { ok: false; reason: string } {
    const reason = this.refusals.get(name);
    return reason === undefined ? { ok: true } : { ok: false, reason };
  }
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}
