import { describe, expect, it } from 'vitest';
import { decideBusy, IDLE_THRESHOLDS, judgeIdle } from '../../src/daemon/idle.js';

const GB = 1024 ** 3;

describe('the idle rule (platform-facts.md §A), each bound inclusive', () => {
  it('an empty load is idle', () => {
    expect(judgeIdle({ gpus: [] })).toEqual({ idle: true, busy_reasons: [] });
  });

  it('non-job CPU: 5 % is idle, 5.1 % is busy', () => {
    expect(judgeIdle({ cpuPercent: 5, gpus: [] }).idle).toBe(true);
    expect(judgeIdle({ cpuPercent: 5.1, gpus: [] })).toEqual({ idle: false, busy_reasons: ['non-job CPU 5.1 % > 5 %'] });
  });

  it('non-job RAM: 16 GB is idle, a byte more is busy', () => {
    expect(judgeIdle({ memoryBytes: 16 * GB, gpus: [] }).idle).toBe(true);
    expect(judgeIdle({ memoryBytes: 16 * GB + 1, gpus: [] }).busy_reasons).toEqual(['non-job RAM 16.0 GB > 16.0 GB']);
    expect(judgeIdle({ memoryBytes: 37.25 * GB, gpus: [] }).busy_reasons).toEqual(['non-job RAM 37.3 GB > 16.0 GB']);
  });

  it('GPU SM: 5 % is idle, 6 % is busy, named by GPU', () => {
    expect(judgeIdle({ gpus: [{ index: 0, utilPercent: 5 }] }).idle).toBe(true);
    expect(
      judgeIdle({
        gpus: [
          { index: 0, utilPercent: 5 },
          { index: 3, utilPercent: 6 },
        ],
      }).busy_reasons,
    ).toEqual(['GPU 3 SM 6 % > 5 % (no job of this daemon runs on it)']);
  });

  it('VRAM: 2 GB is idle, a byte more is busy', () => {
    expect(judgeIdle({ gpus: [{ index: 1, nonJobVramBytes: 2 * GB }] }).idle).toBe(true);
    expect(judgeIdle({ gpus: [{ index: 1, nonJobVramBytes: 2 * GB + 1 }] }).busy_reasons).toEqual(['GPU 1 non-job VRAM 2.0 GB > 2.0 GB']);
  });

  it('input: 5 minutes without input is idle, less is busy; no desktop session skips the rule', () => {
    expect(judgeIdle({ inputIdleMs: 5 * 60_000, gpus: [] }).idle).toBe(true);
    expect(judgeIdle({ inputIdleMs: 5 * 60_000 - 1, gpus: [] }).busy_reasons).toEqual(['keyboard/mouse input 299 s ago < 5 min']);
    expect(judgeIdle({ gpus: [] }).idle).toBe(true);
  });

  it('every failing rule is named', () => {
    expect(
      judgeIdle({ cpuPercent: 37, memoryBytes: 20 * GB, inputIdleMs: 0, gpus: [{ index: 0, utilPercent: 90, nonJobVramBytes: 8 * GB }] }).busy_reasons,
    ).toHaveLength(5);
  });

  it("the thresholds are the platform's", () => {
    expect(IDLE_THRESHOLDS).toEqual({ cpuPercent: 5, memoryBytes: 16 * GB, gpuUtilPercent: 5, vramBytes: 2 * GB, inputIdleMs: 300_000 });
  });
});

describe('decideBusy: what a daemon does with its activity and control state', () => {
  const now = Date.parse('2026-12-07T12:00:00Z');
  const idle = { idle: true, busy_reasons: [] };
  const busy = { idle: false, busy_reasons: ['non-job CPU 37 % > 5 %'] };
  const forbid = { paused_until: null, forbid_busy_assign: true };
  const allow = { paused_until: null, forbid_busy_assign: false };
  const pausedUntil = '2026-12-07T14:00:00.000Z';

  it('idle: takes work', () => {
    expect(decideBusy(idle, forbid, now)).toEqual({ takeWork: true, giveBack: false, reason: 'idle: takes work' });
    expect(decideBusy(idle, allow, now)).toMatchObject({ takeWork: true, giveBack: false });
  });

  it('paused: takes no new task, lets what runs finish', () => {
    const decision = decideBusy(idle, { ...forbid, paused_until: pausedUntil }, now);
    expect(decision).toEqual({ takeWork: false, giveBack: false, reason: `paused until ${pausedUntil}: takes no new task, what runs finishes` });
  });

  it('a pause that has ended does not count', () => {
    expect(decideBusy(idle, { ...forbid, paused_until: '2026-12-07T11:59:59.000Z' }, now).takeWork).toBe(true);
  });

  it('busy with forbid-busy-assign on: no new task, gives back what it runs, saying why', () => {
    const decision = decideBusy(busy, forbid, now);
    expect(decision).toMatchObject({ takeWork: false, giveBack: true });
    expect(decision.reason).toBe('busy (non-job CPU 37 % > 5 %) and forbid-busy-assign is on: gives back what it runs');
  });

  it('busy with forbid-busy-assign off (the owner allows assignment while busy): keeps running and takes work', () => {
    expect(decideBusy(busy, allow, now)).toMatchObject({ takeWork: true, giveBack: false });
  });

  it('busy and paused: the busy rule still gives back when forbid is on; with it off, what runs finishes', () => {
    expect(decideBusy(busy, { ...forbid, paused_until: pausedUntil }, now)).toMatchObject({ takeWork: false, giveBack: true });
    expect(decideBusy(busy, { ...allow, paused_until: pausedUntil }, now)).toMatchObject({ takeWork: false, giveBack: false });
  });
});
