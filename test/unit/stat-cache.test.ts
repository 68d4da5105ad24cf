import fs from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StatCache } from '../../src/pack/stat-cache.js';
import { compareBytes, sortByBytes, sortStringsByBytes } from '../../src/project/build-files.js';
import { sha256Hex } from '../../src/util/fs.js';
import { tempDir } from '../helpers/context.js';

const OLD = new Date('2020-01-01T00:00:00Z');
const later = (): number => Date.now() + 10_000;

async function tree(contents: Record<string, string>): Promise<{ root: string; files: Array<{ path: string; absolute: string }> }> {
  const root = await tempDir();
  for (const [rel, text] of Object.entries(contents)) {
    await fs.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await fs.writeFile(path.join(root, rel), text);
    await fs.utimes(path.join(root, rel), OLD, OLD);
  }
  return { root, files: Object.keys(contents).map((rel) => ({ path: rel, absolute: path.join(root, rel) })) };
}

async function digestWith(
  cacheFile: string,
  files: Array<{ path: string; absolute: string }>,
  now = later,
): Promise<{ digests: string[]; hits: number; misses: number }> {
  const cache = await StatCache.load(cacheFile, now);
  const digests = (await cache.digestAll(files)).map((d) => d.digest);
  await cache.save();
  return { digests, hits: cache.hits, misses: cache.misses };
}

describe('stat cache', () => {
  it('answers a warm run from stats, with the same digests as reading the files', async () => {
    const { root, files } = await tree({ 'a.txt': 'alpha', 'b/c.txt': 'gamma', 'b/d é.txt': 'delta' });
    const cacheFile = path.join(root, 'cache.bin');
    const cold = await digestWith(cacheFile, files);
    expect(cold).toEqual({ digests: ['alpha', 'gamma', 'delta'].map(sha256Hex), hits: 0, misses: 3 });
    const warm = await digestWith(cacheFile, files);
    expect(warm).toEqual({ digests: cold.digests, hits: 3, misses: 0 });
  });

  it('finds entries when files are added, removed or asked in another order, and keeps only the files asked about', async () => {
    const { root, files } = await tree({ a: '1', b: '2', c: '3', d: '4' });
    const cacheFile = path.join(root, 'cache.bin');
    await digestWith(cacheFile, files);
    const [a, b, c, d] = files as [(typeof files)[0], (typeof files)[0], (typeof files)[0], (typeof files)[0]];
    const reordered = await digestWith(cacheFile, [d, b, a]);
    expect(reordered).toEqual({ digests: ['4', '2', '1'].map(sha256Hex), hits: 3, misses: 0 });
    // c was not asked about last time, so it is forgotten; the others are found in the new order.
    expect(await digestWith(cacheFile, [a, b, c, d])).toEqual({ digests: ['1', '2', '3', '4'].map(sha256Hex), hits: 3, misses: 1 });
  });

  it('reads a file again when its size, mtime, ctime or inode changed', async () => {
    const { root, files } = await tree({ 'same-size.txt': 'aaaa', 'chmod.txt': 'x', 'replaced.txt': 'old' });
    const cacheFile = path.join(root, 'cache.bin');
    await digestWith(cacheFile, files);
    await fs.writeFile(files[0]!.absolute, 'bbbb');
    await fs.utimes(files[0]!.absolute, OLD, OLD); // same size, same mtime: ctime still tells
    await fs.chmod(files[1]!.absolute, 0o755);
    await fs.rm(files[2]!.absolute);
    await fs.writeFile(files[2]!.absolute, 'new');
    await fs.utimes(files[2]!.absolute, OLD, OLD);
    const after = await digestWith(cacheFile, files);
    expect(after).toEqual({ digests: [sha256Hex('bbbb'), sha256Hex('x'), sha256Hex('new')], hits: 0, misses: 3 });
  });

  it('does not remember a file changed in the last two seconds', async () => {
    const { root, files } = await tree({ 'fresh.txt': 'now' });
    const cacheFile = path.join(root, 'cache.bin');
    const stat = await fs.stat(files[0]!.absolute);
    const justAfter = (): number => Math.max(stat.mtimeMs, stat.ctimeMs) + 500;
    await digestWith(cacheFile, files, justAfter);
    expect((await digestWith(cacheFile, files, justAfter)).misses).toBe(1);
    await digestWith(cacheFile, files, later);
    expect((await digestWith(cacheFile, files, later)).hits).toBe(1);
  });

  it('treats a damaged or foreign cache file as empty, and replaces it', async () => {
    const { root, files } = await tree({ a: '1', b: '2' });
    const cacheFile = path.join(root, 'cache.bin');
    await digestWith(cacheFile, files);
    const good = await fs.readFile(cacheFile);
    for (const damaged of [good.subarray(0, good.length - 3), Buffer.from('{"version":2,"entries":{}}'), Buffer.alloc(0)]) {
      await fs.writeFile(cacheFile, damaged);
      expect(await digestWith(cacheFile, files)).toEqual({ digests: [sha256Hex('1'), sha256Hex('2')], hits: 0, misses: 2 });
      expect((await digestWith(cacheFile, files)).hits).toBe(2);
    }
  });
});

describe('sortByBytes', () => {
  it('orders by UTF-8 bytes, like compareBytes and Buffer.compare, for any text', () => {
    fc.assert(
      // Any text, and text from a small alphabet where the tricky neighbours meet often: astral
      // characters sharing a high surrogate, U+E000-U+FFFF, lone surrogates, ASCII.
      fc.property(
        fc.array(
          fc.oneof(
            fc.string({ unit: 'binary' }),
            fc.string({
              unit: fc.constantFrom(
                'a',
                '/',
                '\ud7ff',
                '\ue000',
                '\uffff',
                '\ud800',
                '\udc00',
                '\u{10000}',
                '\u{10001}',
                '\u{103ff}',
                '\u{10400}',
                '\u{b1800}',
                '\u{b1801}',
              ),
            }),
          ),
          { maxLength: 30 },
        ),
        fc.boolean(),
        (texts, ascii) => {
          const items = ascii ? texts.map((t) => t.replace(/[^\x00-\x7f]/g, 'x')) : texts;
          const expected = [...items].sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
          expect(sortByBytes([...items], (t) => t).map((t) => Buffer.from(t, 'utf8').toString('hex'))).toEqual(
            expected.map((t) => Buffer.from(t, 'utf8').toString('hex')),
          );
          expect(sortStringsByBytes([...items]).map((t) => Buffer.from(t, 'utf8').toString('hex'))).toEqual(
            expected.map((t) => Buffer.from(t, 'utf8').toString('hex')),
          );
          expect([...items].sort(compareBytes).map((t) => Buffer.from(t, 'utf8').toString('hex'))).toEqual(
            expected.map((t) => Buffer.from(t, 'utf8').toString('hex')),
          );
        },
      ),
      { numRuns: 500 },
    );
  });

  it('puts U+FFFF after astral characters, as their UTF-8 bytes say, and tells astral neighbours apart', () => {
    expect(sortByBytes(['\u{1f600}', '\uffff', 'a'], (t) => t)).toEqual(['a', '\uffff', '\u{1f600}']);
    // Same high surrogate, different low ones: found by the property above with seed -321139572.
    expect(sortByBytes(['\u{b1801}', '\u{b1800}'], (t) => t)).toEqual(['\u{b1800}', '\u{b1801}']);
    expect(compareBytes('\u{b1801}', '\u{b1800}')).toBeGreaterThan(0);
  });
});
