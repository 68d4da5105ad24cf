import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ArtifactCapture, type CapturedArtifact } from '../../src/runner/artifacts.js';
import type { ArtifactOrder } from '../../src/project/cycleswap.js';
import { tempDir } from '../helpers/context.js';

const cleanup: string[] = [];
afterEach(async () => {
  for (const dir of cleanup.splice(0)) await fs.rm(dir, { recursive: true, force: true });
});

/** A capture driven by an explicit clock: `poll(ms)` is one scan at that time. */
async function setup(order: ArtifactOrder = 'FIFO') {
  const root = await tempDir('cycle-capture-');
  cleanup.push(root);
  const live = path.join(root, 'live');
  const store = path.join(root, 'store');
  await fs.mkdir(live);
  await fs.mkdir(store);
  const captured: string[] = [];
  const refused: string[] = [];
  const capture = new ArtifactCapture({
    liveDir: live,
    storeDir: store,
    order,
    onCaptured: (a: CapturedArtifact) => void captured.push(a.path),
    onRefused: (relative) => void refused.push(relative),
  });
  /** Writes a file with an explicit mtime (seconds), so order never depends on the kernel's clock tick. */
  const write = async (relative: string, text: string, mtime: number): Promise<void> => {
    const file = path.join(live, relative);
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, text);
    await fs.utimes(file, mtime, mtime);
  };
  const stored = (relative: string): Promise<string> => fs.readFile(path.join(store, relative), 'utf8');
  return { root, live, store, capture, captured, refused, write, stored };
}

describe('artifact capture: the 500 ms rule', () => {
  it('takes a file only once it has been unchanged for 500 ms', async () => {
    const t = await setup();
    await t.write('a.txt', 'one', 1000);
    await t.capture.poll(0);
    await t.capture.poll(499);
    expect(t.captured).toEqual([]);
    await t.capture.poll(500);
    expect(t.captured).toEqual(['a.txt']);
    expect(await t.stored('a.txt')).toBe('one');
    await t.capture.poll(2000);
    expect(t.captured).toEqual(['a.txt']); // unchanged: not taken twice
  });

  it('a change restarts the wait; a file rewritten later is taken again (the newest wins)', async () => {
    const t = await setup();
    await t.write('a.txt', 'one', 1000);
    await t.capture.poll(0);
    await t.write('a.txt', 'one more', 1001);
    await t.capture.poll(400);
    await t.capture.poll(600); // 200 ms since the change
    expect(t.captured).toEqual([]);
    await t.capture.poll(900);
    expect(t.captured).toEqual(['a.txt']);
    await t.write('a.txt', 'two', 1002);
    await t.capture.poll(1000);
    await t.capture.poll(1500);
    expect(t.captured).toEqual(['a.txt', 'a.txt']);
    expect(await t.stored('a.txt')).toBe('two');
  });

  it('a deleted file stays captured; sub-folders are kept', async () => {
    const t = await setup();
    await t.write('ckpt/e1.bin', 'e1', 1000);
    await t.capture.poll(0);
    await t.capture.poll(500);
    await fs.rm(path.join(t.live, 'ckpt/e1.bin'));
    await t.capture.poll(1000);
    expect(t.capture.list().map((a) => a.path)).toEqual(['ckpt/e1.bin']);
    expect(await t.stored('ckpt/e1.bin')).toBe('e1');
  });

  it('the final sweep takes what changed without waiting', async () => {
    const t = await setup();
    await t.write('late.txt', 'late', 1000);
    await t.capture.poll(0);
    await t.capture.stop();
    expect(t.captured).toEqual(['late.txt']);
  });
});

describe('artifact capture: order', () => {
  it.each([
    ['FIFO', ['a.txt', 'ckpt/e1.bin', 'ckpt/e2.bin']],
    ['LIFO', ['ckpt/e2.bin', 'ckpt/e1.bin', 'a.txt']],
  ] as const)('files ready together are taken one at a time in %s order', async (order, expected) => {
    const t = await setup(order);
    await t.write('ckpt/e2.bin', '2', 1003);
    await t.write('a.txt', 'a', 1001);
    await t.write('ckpt/e1.bin', '1', 1002);
    await t.capture.poll(0);
    await t.capture.poll(500);
    expect(t.captured).toEqual(expected);
    expect(t.capture.list().map((a) => a.path)).toEqual(expected);
  });

  it('LIFO lists the newest capture first (a rewrite moves to the front); FIFO keeps the order first written', async () => {
    const lists: Record<string, string[][]> = {};
    for (const order of ['FIFO', 'LIFO'] as const) {
      const t = await setup(order);
      await t.write('a.txt', 'a', 1000);
      await t.capture.poll(0);
      await t.capture.poll(500);
      await t.write('b.txt', 'b', 1001);
      await t.capture.poll(600);
      await t.capture.poll(1100);
      const before = t.capture.list().map((a) => a.path);
      await t.write('a.txt', 'a again', 1002);
      await t.capture.poll(1200);
      await t.capture.poll(1700);
      lists[order] = [before, t.capture.list().map((a) => a.path)];
    }
    expect(lists.FIFO).toEqual([
      ['a.txt', 'b.txt'],
      ['a.txt', 'b.txt'],
    ]);
    expect(lists.LIFO).toEqual([
      ['b.txt', 'a.txt'],
      ['a.txt', 'b.txt'],
    ]);
  });
});

describe('artifact capture: a hostile job', () => {
  it('a symbolic link is refused and never followed', async () => {
    const t = await setup();
    const secret = path.join(t.root, 'secret.txt');
    await fs.writeFile(secret, 'host secret');
    await fs.symlink(secret, path.join(t.live, 'link.txt'));
    await fs.mkdir(path.join(t.root, 'outside'));
    await fs.writeFile(path.join(t.root, 'outside', 'x.txt'), 'outside');
    await fs.symlink(path.join(t.root, 'outside'), path.join(t.live, 'dir'));
    await t.capture.poll(0);
    await t.capture.poll(500);
    await t.capture.stop();
    expect(t.captured).toEqual([]);
    expect(t.refused.sort()).toEqual(['dir', 'link.txt']);
    await expect(fs.readdir(t.store)).resolves.toEqual([]);
  });
});

describe('artifact capture: resume', () => {
  it('puts an earlier store back in the live folder, counted as captured', async () => {
    const t = await setup();
    const previous = path.join(t.root, 'previous');
    await fs.mkdir(path.join(previous, 'ckpt'), { recursive: true });
    await fs.writeFile(path.join(previous, 'ckpt', 'e1.bin'), 'e1');
    await t.capture.resumeFrom(previous);
    expect(await fs.readFile(path.join(t.live, 'ckpt', 'e1.bin'), 'utf8')).toBe('e1');
    expect(await t.stored('ckpt/e1.bin')).toBe('e1');
    await t.capture.poll(0);
    await t.capture.poll(1000);
    expect(t.captured).toEqual([]); // not taken again while unchanged
    expect(t.capture.list().map((a) => a.path)).toEqual(['ckpt/e1.bin']);
  });
});

describe('issue 18: each capture is one row, placed by its own key; abort stops at once', () => {
  it.each(['FIFO', 'LIFO'] as const)('%s: the latest uploadKey of each file sorts them as list() does (no other row is renumbered)', async (order) => {
    const root = await tempDir('cycle-capture-');
    cleanup.push(root);
    const live = path.join(root, 'live');
    await fs.mkdir(live);
    const rows = new Map<string, number>();
    const capture = new ArtifactCapture({ liveDir: live, storeDir: path.join(root, 'store'), order, onCaptured: (a) => void rows.set(a.path, a.uploadKey) });
    const write = async (name: string, mtime: number): Promise<void> => {
      await fs.writeFile(path.join(live, name), `${name}@${mtime}`);
      await fs.utimes(path.join(live, name), mtime, mtime);
    };
    await write('b.txt', 1002);
    await write('a.txt', 1001);
    await capture.poll(0);
    await capture.poll(500);
    await write('c.txt', 1003);
    await capture.poll(600);
    await capture.poll(1100);
    await write('a.txt', 1004); // rewritten: LIFO moves it to the front, FIFO keeps its place
    await capture.poll(1200);
    await capture.poll(1700);
    const byKey = [...rows.entries()].sort(([, x], [, y]) => x - y).map(([name]) => name);
    expect(byKey).toEqual(capture.list().map((a) => a.path));
    expect(byKey).toEqual(order === 'FIFO' ? ['a.txt', 'b.txt', 'c.txt'] : ['a.txt', 'c.txt', 'b.txt']);
  });

  it('abort takes no last sweep: files not yet captured stay uncaptured', async () => {
    const t = await setup();
    await t.write('a.txt', 'a', 1000);
    await t.capture.poll(0);
    await t.capture.abort();
    await t.capture.stop();
    expect(t.captured).toEqual([]);
  });
});

describe("issue 18: a cap on what a task's artifacts take", () => {
  it('a sparse file counts its apparent size: over the cap it is refused, never copied; files within the cap are taken', async () => {
    const root = await tempDir('cycle-capture-');
    cleanup.push(root);
    const live = path.join(root, 'live');
    const store = path.join(root, 'store');
    await fs.mkdir(live);
    const captured: string[] = [];
    const refused: Array<[string, string]> = [];
    const capture = new ArtifactCapture({
      liveDir: live,
      storeDir: store,
      order: 'FIFO',
      maxBytes: 1024 * 1024,
      onCaptured: (a) => void captured.push(a.path),
      onRefused: (relative, why) => void refused.push([relative, why]),
    });
    await fs.writeFile(path.join(live, 'small.txt'), 'x'.repeat(1000));
    // 256 MiB apparent, next to nothing allocated.
    const sparse = await fs.open(path.join(live, 'sparse.bin'), 'w');
    await sparse.truncate(256 * 1024 * 1024);
    await sparse.close();
    await capture.poll(0);
    await capture.poll(500);
    await capture.stop();
    expect(captured).toEqual(['small.txt']);
    expect(refused).toEqual([['sparse.bin', expect.stringContaining(`over ${1024 * 1024} bytes`)]]);
    await expect(fs.stat(path.join(store, 'sparse.bin'))).rejects.toMatchObject({ code: 'ENOENT' });
    // A second file that would pass the cap together with the first is refused too.
    await fs.writeFile(path.join(live, 'big.txt'), Buffer.alloc(1024 * 1024));
    await fs.utimes(path.join(live, 'small.txt'), 1000, 1000);
    await fs.utimes(path.join(live, 'big.txt'), 2000, 2000); // written after small.txt: taken after it
    const again = new ArtifactCapture({
      liveDir: live,
      storeDir: store,
      order: 'FIFO',
      maxBytes: 1024 * 1024,
      onRefused: (relative) => void refused.push([relative, '']),
    });
    await again.poll(0);
    await again.poll(500);
    expect(refused.map(([name]) => name).sort()).toEqual(['big.txt', 'sparse.bin', 'sparse.bin']);
  });
});

describe('artifact capture: a capture that cannot be delivered (a daemon cut off from its server)', () => {
  it('a live scan whose onCaptured throws leaves no unhandled rejection; polling goes on and stop() tells the failure', async () => {
    const root = await tempDir('cycle-capture-');
    cleanup.push(root);
    const live = path.join(root, 'live');
    await fs.mkdir(live);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      let calls = 0;
      const capture = new ArtifactCapture({
        liveDir: live,
        storeDir: path.join(root, 'store'),
        order: 'FIFO',
        stableMs: 0,
        onCaptured: async () => {
          calls++;
          throw new Error('cannot reach the server');
        },
      });
      await fs.writeFile(path.join(live, 'a.txt'), 'a');
      capture.start(20);
      // Bounded: the first live scan takes the file (and fails), a later one runs after it.
      for (let i = 0; i < 100 && calls < 1; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      await fs.writeFile(path.join(live, 'b.txt'), 'b');
      for (let i = 0; i < 100 && calls < 2; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(calls).toBe(2); // polling went on after the failure
      await expect(capture.stop()).rejects.toThrow('cannot reach the server');
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
