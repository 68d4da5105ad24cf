import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase, type DB } from '../../src/server/db.js';
import { DomainError } from '../../src/server/errors.js';
import { MachineRegistry, type MachineLeases } from '../../src/server/machines/registry.js';
import { candidateOf, noCandidateReason, pickGpus, taskNeeds, unfit } from '../../src/server/queue/placement.js';
import { cpuInventory, gpuInventory, IDLE, NEWER_DRIVER, OLDER_DRIVER } from '../helpers/machines.js';
import { manualClock, tempDir } from '../helpers/context.js';

const LEASE_MS = 30_000;
const opened: DB[] = [];
afterEach(() => {
  for (const db of opened.splice(0)) db.close();
});

async function setup() {
  const dir = await tempDir('cycle-machines-');
  const db = openDatabase(path.join(dir, 'state.db'));
  opened.push(db);
  const clock = manualClock();
  const released: Array<{ name: string; reason: string }> = [];
  const leases: MachineLeases = {
    runningOn: (name) => (name === 'busy-one' ? [{ job_id: 'job_1', task_id: 'task_1', started_at: null }] : []),
    notPlacedOn: () => [],
    releaseMachine: (name, reason) => released.push({ name, reason }),
  };
  const registry = new MachineRegistry({ db, clock, leaseMs: LEASE_MS, leases: () => leases });
  return { db, clock, registry, released, dir };
}

function enrol(registry: MachineRegistry, name: string, options: { tokenName?: string; activity?: Partial<typeof IDLE> } = {}) {
  const { token, token_id } = registry.createToken(options.tokenName);
  const auth = registry.authenticate(token)!;
  expect(auth.tokenId).toBe(token_id);
  registry.heartbeat(auth.tokenId, name, cpuInventory(), { ...IDLE, ...options.activity }, 1);
  return { token, tokenId: token_id };
}

describe('the machine registry', () => {
  it('machine tokens: cym_ and 32 random bytes, shown once, stored only as their SHA-256 hash', async () => {
    const { registry, db, dir } = await setup();
    const created = registry.createToken();
    expect(created.token).toMatch(/^cym_[A-Za-z0-9_-]{43,}$/);
    const rows = db.prepare('SELECT * FROM machine_tokens').all() as Array<{ hash: string }>;
    expect(rows).toHaveLength(1);
    expect(rows[0]!.hash).toBe(createHash('sha256').update(created.token).digest('hex'));
    db.pragma('wal_checkpoint(TRUNCATE)');
    const stored = await fs.readFile(path.join(dir, 'state.db'));
    expect(stored.includes(created.token.slice(4))).toBe(false);
    expect(registry.createToken().token).not.toBe(created.token);
  });

  it('authenticate: the machine a token belongs to; a user token, an unknown or revoked one is not a machine', async () => {
    const { registry } = await setup();
    const { token } = enrol(registry, 'gpu-a');
    expect(registry.authenticate(token)).toMatchObject({ name: 'gpu-a' });
    expect(registry.authenticate(`cyc_${'x'.repeat(32)}`)).toBeUndefined();
    expect(registry.authenticate(`${token}x`)).toBeUndefined();
    expect(registry.authenticate('')).toBeUndefined();
    registry.remove('gpu-a');
    expect(registry.authenticate(token)).toBeUndefined();
  });

  it('a token created with --name enrols that machine only; a name held by another live token is refused, naming it', async () => {
    const { registry } = await setup();
    const bound = registry.createToken('gpu-a');
    expect(bound.name).toBe('gpu-a');
    expect(() => registry.createToken('gpu-a')).toThrow(/machine name "gpu-a" is already bound/);
    const error = (() => {
      try {
        registry.heartbeat(bound.token_id, 'gpu-b', cpuInventory(), IDLE, 1);
      } catch (e) {
        return e as DomainError;
      }
    })();
    expect(error).toBeInstanceOf(DomainError);
    expect(error).toMatchObject({ kind: 'conflict', code: 'machine_name_bound' });
    expect(error!.message).toContain('cycle daemon run --name gpu-a');
    expect(registry.heartbeat(bound.token_id, 'gpu-a', cpuInventory(), IDLE, 1)).toBe('gpu-a');
    // An unnamed token takes the name of its first heartbeat; another token cannot take it.
    const first = registry.createToken();
    registry.heartbeat(first.token_id, 'cpu-x', cpuInventory(), IDLE, 2);
    const second = registry.createToken();
    expect(() => registry.heartbeat(second.token_id, 'cpu-x', cpuInventory(), IDLE, 1)).toThrow(/machine name "cpu-x" is held by another machine token/);
    expect(() => registry.heartbeat(first.token_id, 'cpu-y', cpuInventory(), IDLE, 1)).toThrow(/belongs to machine "cpu-x"/);
    expect(() => registry.heartbeat(second.token_id, 'Bad Name', cpuInventory(), IDLE, 1)).toThrow(/invalid machine name/);
    expect(() => registry.heartbeat(second.token_id, 'ok', cpuInventory(), IDLE, 0)).toThrow(/slots must be a whole number from 1 to 64/);
    expect(registry.show('cpu-x')).toMatchObject({ slots: 2, inventory: { cpus: 16 } });
    // What a machine sends is checked: a bad inventory is the daemon's fault, naming the field.
    const bad = { ...cpuInventory(), cpus: -1 };
    expect(() => registry.heartbeat(first.token_id, 'cpu-x', bad, IDLE, 1)).toThrow(expect.objectContaining({ kind: 'invalid', field: 'inventory.cpus' }));
  });

  it('state: offline by heartbeat age (the lease life), then draining > paused > busy > idle', async () => {
    const { registry, clock } = await setup();
    const { tokenId } = enrol(registry, 'gpu-a');
    expect(registry.show('gpu-a').state).toBe('idle');
    clock.advance(LEASE_MS);
    expect(registry.show('gpu-a').state).toBe('idle');
    clock.advance(1);
    expect(registry.show('gpu-a')).toMatchObject({ state: 'offline', last_heartbeat_at: '2026-11-23T12:00:00.000Z' });
    expect(registry.whyIdleNow('gpu-a')).toBe('machine gpu-a is offline (last heartbeat 2026-11-23T12:00:00.000Z)');
    const beat = (activity: Partial<typeof IDLE>) => registry.heartbeat(tokenId, 'gpu-a', cpuInventory(), { ...IDLE, ...activity }, 1);
    beat({ idle: false, busy_reasons: ['non-job CPU 37 % > 5 %'] });
    expect(registry.show('gpu-a').state).toBe('busy');
    expect(registry.mayTakeWork('gpu-a')).toEqual({ ok: false, reason: 'machine gpu-a is busy (non-job CPU 37 % > 5 %) and forbids assignment while busy' });
    beat({ idle: false, busy_reasons: ['non-job CPU 37 % > 5 %'], forbid_busy_assign: false });
    expect(registry.mayTakeWork('gpu-a')).toEqual({ ok: true });
    const until = new Date(clock.now() + 3_600_000).toISOString();
    beat({ paused_until: until });
    expect(registry.show('gpu-a').state).toBe('paused');
    expect(registry.mayTakeWork('gpu-a')).toEqual({ ok: false, reason: `machine gpu-a is paused until ${until} (cycle daemon resume ends it)` });
    expect(registry.drain('gpu-a', true)).toMatchObject({ state: 'draining', draining: true });
    expect(registry.mayTakeWork('gpu-a')).toMatchObject({ ok: false, reason: expect.stringContaining('draining') });
    clock.advance(LEASE_MS + 1);
    expect(registry.show('gpu-a').state).toBe('offline');
    beat({});
    expect(registry.drain('gpu-a', false).state).toBe('idle');
    // A machine running a task is busy.
    enrol(registry, 'busy-one');
    expect(registry.show('busy-one')).toMatchObject({ state: 'busy', running: [{ task_id: 'task_1' }] });
    expect(registry.list().map((m) => [m.name, m.state])).toEqual([
      ['busy-one', 'busy'],
      ['gpu-a', 'idle'],
    ]);
  });

  it('remove: its token is revoked, its leases end with the reason; the name is free again', async () => {
    const { registry, released } = await setup();
    const { tokenId } = enrol(registry, 'gpu-a');
    expect(registry.remove('gpu-a')).toEqual({ name: 'gpu-a', removed: true });
    expect(released).toEqual([{ name: 'gpu-a', reason: 'machine gpu-a was removed' }]);
    expect(registry.list()).toEqual([]);
    expect(registry.mayTakeWork('gpu-a')).toMatchObject({ ok: false });
    expect(() => registry.heartbeat(tokenId, 'gpu-a', cpuInventory(), IDLE, 1)).toThrow(/revoked/);
    expect(() => registry.show('gpu-a')).toThrow(/no machine "gpu-a" is enrolled \(none is: cycle machine token create/);
    enrol(registry, 'gpu-a');
    expect(registry.list()).toHaveLength(1);
  });

  it('a token not used yet is revoked by its id, or by the name it binds; one in use takes its machine with it', async () => {
    const { registry, released } = await setup();
    const unused = registry.createToken();
    expect(registry.revokeToken(unused.token_id)).toEqual({ token_id: unused.token_id, revoked: true });
    expect(registry.authenticate(unused.token)).toBeUndefined();
    const named = registry.createToken('gpu-z');
    expect(registry.remove('gpu-z')).toEqual({ name: 'gpu-z', removed: true });
    expect(registry.authenticate(named.token)).toBeUndefined();
    expect(registry.createToken('gpu-z').name).toBe('gpu-z');
    const { token, tokenId } = enrol(registry, 'gpu-y');
    registry.revokeToken(tokenId);
    expect(registry.authenticate(token)).toBeUndefined();
    expect(registry.list().map((m) => m.name)).toEqual([]);
    expect(released).toEqual([{ name: 'gpu-y', reason: 'machine gpu-y was removed' }]);
    expect(() => registry.revokeToken('mtok_nope')).toThrow(/no machine token mtok_nope/);
  });

  it('a verified token is answered from memory; every write to it (name bound, drain, remove, revoke) is seen on its very next use', async () => {
    const { registry, db } = await setup();
    const statements: string[] = [];
    const prepare = db.prepare.bind(db);
    db.prepare = ((sql: string) => {
      statements.push(sql);
      return prepare(sql);
    }) as DB['prepare'];
    const tokenReads = () => statements.filter((sql) => sql.includes('FROM machine_tokens WHERE hash')).length;
    const { token, token_id } = registry.createToken();
    expect(registry.authenticate(token)).toEqual({ tokenId: token_id, name: undefined });
    expect(registry.authenticate(token)).toEqual({ tokenId: token_id, name: undefined });
    expect(tokenReads()).toBe(1); // the second answer came from memory
    // Its first heartbeat binds the name: the next answer has it.
    registry.heartbeat(token_id, 'gpu-a', cpuInventory(), IDLE, 1);
    expect(registry.authenticate(token)).toEqual({ tokenId: token_id, name: 'gpu-a' });
    // A drain is seen by the next lease request's check (the machine's row is read from memory too).
    expect(registry.mayTakeWork('gpu-a')).toEqual({ ok: true });
    registry.drain('gpu-a', true);
    expect(registry.mayTakeWork('gpu-a')).toMatchObject({ ok: false, reason: expect.stringContaining('draining') });
    registry.drain('gpu-a', false);
    expect(registry.mayTakeWork('gpu-a')).toEqual({ ok: true });
    const reads = tokenReads();
    expect(registry.authenticate(token)).toMatchObject({ name: 'gpu-a' });
    expect(tokenReads()).toBe(reads);
    // Removed: refused on its very next request, and its unchanged heartbeat is refused too.
    registry.remove('gpu-a');
    expect(registry.authenticate(token)).toBeUndefined();
    expect(() => registry.heartbeat(token_id, 'gpu-a', cpuInventory(), IDLE, 1)).toThrow(/revoked/);
    expect(registry.mayTakeWork('gpu-a')).toMatchObject({ ok: false, reason: expect.stringContaining('not enrolled') });
    // Revoked by its id (another token, verified and in use): the same.
    const other = enrol(registry, 'gpu-b');
    expect(registry.authenticate(other.token)).toMatchObject({ name: 'gpu-b' });
    registry.revokeToken(other.tokenId);
    expect(registry.authenticate(other.token)).toBeUndefined();
    expect(() => registry.heartbeat(other.tokenId, 'gpu-b', cpuInventory(), IDLE, 1)).toThrow(/revoked/);
    // A caller cannot change what is kept by changing what it was given.
    const third = enrol(registry, 'gpu-c');
    const given = registry.authenticate(third.token)!;
    given.name = 'gpu-a';
    expect(registry.authenticate(third.token)).toMatchObject({ name: 'gpu-c' });
  });

  it('a heartbeat that changes nothing but its time is stored at most every 10 s; the machine list shows the latest; a change is stored at once', async () => {
    const { registry, db, clock } = await setup();
    const stored = () =>
      db.prepare('SELECT last_heartbeat_at, activity FROM machines WHERE name = ?').get('gpu-a') as { last_heartbeat_at: string; activity: string };
    const { tokenId } = enrol(registry, 'gpu-a');
    const first = new Date(clock.now()).toISOString();
    expect(stored().last_heartbeat_at).toBe(first);
    clock.advance(5_000);
    registry.heartbeat(tokenId, 'gpu-a', cpuInventory(), IDLE, 1);
    const later = new Date(clock.now()).toISOString();
    expect(registry.show('gpu-a').last_heartbeat_at).toBe(later);
    expect(registry.list()[0]!.last_heartbeat_at).toBe(later);
    expect(stored().last_heartbeat_at).toBe(first); // not written: nothing changed but the time
    // The lease life after the last heartbeat, not after the stored one, makes it offline.
    clock.advance(LEASE_MS - 1);
    expect(registry.show('gpu-a').state).toBe('idle');
    registry.heartbeat(tokenId, 'gpu-a', cpuInventory(), IDLE, 1); // 10 s and more since stored: written
    expect(stored().last_heartbeat_at).toBe(new Date(clock.now()).toISOString());
    clock.advance(1_000);
    registry.heartbeat(tokenId, 'gpu-a', cpuInventory(), { ...IDLE, idle: false, busy_reasons: ['keyboard input 10 s ago'] }, 1);
    expect(stored()).toMatchObject({ last_heartbeat_at: new Date(clock.now()).toISOString(), activity: expect.stringContaining('keyboard input') });
    expect(registry.show('gpu-a').state).toBe('busy');
    // A restart (a new registry on the same database) reads the stored time: at most 10 s old.
    clock.advance(9_000);
    registry.heartbeat(tokenId, 'gpu-a', cpuInventory(), { ...IDLE, idle: false, busy_reasons: ['keyboard input 10 s ago'] }, 1);
    const restarted = new MachineRegistry({ db, clock, leaseMs: LEASE_MS });
    expect(clock.now() - Date.parse(restarted.show('gpu-a').last_heartbeat_at!)).toBeLessThanOrEqual(10_000);
  });

  it('placementMachines and anyGpu: what the queue places by', async () => {
    const { registry } = await setup();
    expect(registry.anyGpu()).toBe(false);
    const { token_id } = registry.createToken();
    registry.heartbeat(token_id, 'gpu-b', gpuInventory(OLDER_DRIVER), IDLE, 1);
    expect(registry.anyGpu()).toBe(true);
    expect(registry.placementMachines()).toEqual([{ name: 'gpu-b', inventory: expect.objectContaining({ cuda: '12.4', driver: '550.144.03' }) }]);
  });
});

describe('placement rules', () => {
  const none = { name: 'cpu-a', local: false as const, inventory: cpuInventory() };
  const older = { name: 'gpu-b', local: false as const, inventory: gpuInventory(OLDER_DRIVER) };
  const newer = { name: 'gpu-c', local: false as const, inventory: gpuInventory(NEWER_DRIVER) };

  it('the fixtures give the three drivers: none, CUDA 12.4, CUDA 13.0', () => {
    expect([none.inventory.cuda, older.inventory.cuda, newer.inventory.cuda]).toEqual([undefined, '12.4', '13.0']);
  });

  it("[job].cuda across three machines: each one meets it or says why; the pool's reason names the best", () => {
    const needs = taskNeeds({}, { cuda: '13.0', gvisor: false });
    expect(needs.gpus).toBe(1);
    expect(unfit(needs, newer)).toBeUndefined();
    expect(unfit(needs, older)).toBe('[job].cuda = "13.0" needs a newer driver: gpu-b supports CUDA 12.4');
    expect(unfit(needs, none)).toMatch(/^the task needs a GPU: cpu-a has none/);
    expect(noCandidateReason(needs, [none, older])).toBe('no machine supports CUDA 13.0; best: gpu-b with 12.4');
    expect(noCandidateReason(needs, [none, older, newer])).toBeUndefined();
    expect(noCandidateReason(taskNeeds({}, { cuda: '12.4', gvisor: false }), [none, older])).toBeUndefined();
    expect(noCandidateReason(needs, [])).toMatch(/^no machine is enrolled and this server runs no worker/);
  });

  it('"sandbox": "gvisor" needs gVisor on a machine; the server\'s own worker is placed by its GPU alone, as before', () => {
    const needs = taskNeeds({}, { gvisor: true });
    const noGvisor = { ...older, inventory: { ...older.inventory, gvisor: false } };
    expect(unfit(needs, noGvisor)).toBe('"sandbox": "gvisor" needs gVisor (runsc) in Docker: gpu-b has none');
    expect(noCandidateReason(needs, [noGvisor])).toBe('no machine has gVisor (runsc) in Docker for "sandbox": "gvisor"');
    expect(unfit(needs, older)).toBeUndefined();
    const local = candidateOf({ workerId: 'local', gpu: { ok: false, reason: 'no driver' } });
    expect(unfit(needs, local)).toBeUndefined();
    expect(unfit(taskNeeds({ profile: 'gpu' }, { gvisor: false }), local)).toBe('the task needs a GPU: this server has none (no driver)');
  });

  it('whole GPUs: the lowest free ones, none when too few are free', () => {
    const inventory = gpuInventory(NEWER_DRIVER, {
      gpus: [0, 1, 2].map((index) => ({ index, name: 'H100', memory_mib: 81_559 })),
    });
    const two = taskNeeds({ requirements: { gpu: 2 } }, { gvisor: false });
    expect(pickGpus(two, inventory, new Set())).toEqual([0, 1]);
    expect(pickGpus(two, inventory, new Set([0]))).toEqual([1, 2]);
    expect(pickGpus(two, inventory, new Set([0, 2]))).toBeUndefined();
    expect(pickGpus(taskNeeds({}, { gvisor: false }), inventory, new Set([0, 1, 2]))).toEqual([]);
  });
});
