import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { gzipDeterministic } from '../../src/pack/gzip.js';
import { CHUNK, ChunkPool, tarStream, type TarEntry } from '../../src/pack/tar.js';
import { extractTarball } from '../../src/server/extract.js';
import { tempDir } from '../helpers/context.js';

async function gzip(input: Buffer, pieces = 7): Promise<Buffer> {
  // Fed in uneven pieces: segments are cut at fixed offsets whatever the writes are.
  const step = Math.ceil(input.length / pieces);
  const parts = Array.from({ length: pieces }, (_, i) => input.subarray(i * step, (i + 1) * step)).filter((p) => p.length > 0);
  const chunks: Buffer[] = [];
  for await (const chunk of gzipDeterministic(Readable.from(parts))) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Text that repeats at distances up to ~20 KiB: matches cross every 1 MiB segment boundary. */
function logText(bytes: number): Buffer {
  let text = '';
  for (let i = 0; text.length < bytes; i++) text += `step ${i % 700},loss ${(1 / ((i % 700) + 1)).toFixed(6)},lr ${(i % 13) * 1e-4}\n`;
  return Buffer.from(text.slice(0, bytes));
}

/** Bytes that compress like a project's: text with a share of random bytes. */
function mixed(bytes: number, seed: number): Buffer {
  const text = logText(bytes);
  let state = seed;
  for (let i = 0; i < bytes; i += 10) {
    state = (state * 1103515245 + 12345) >>> 0;
    text[i] = state >>> 24;
  }
  return text;
}

describe('gzipDeterministic', () => {
  it('round-trips across segment boundaries and gives the same bytes however the input is cut', async () => {
    const input = Buffer.concat([logText(2_500_000), Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) & 0xff))]);
    const once = await gzip(input, 3);
    expect(zlib.gunzipSync(once).equals(input)).toBe(true);
    expect((await gzip(input, 11)).equals(once)).toBe(true);
    expect((await gzip(Buffer.alloc(0))).length).toBeGreaterThan(0);
    expect(zlib.gunzipSync(await gzip(Buffer.alloc(0))).length).toBe(0);
  });

  it('is as small as one long gzip stream (each segment primed with the 32 KiB before it)', async () => {
    const input = logText(4 << 20);
    const ours = (await gzip(input)).length;
    const single = zlib.gzipSync(input, { level: 6 }).length;
    // Unprimed 1 MiB segments were several percent larger on text like this.
    expect(ours / single).toBeLessThan(1.005);
  });
});

describe('packs through the parallel gzip: read back byte for byte by GNU tar and by our extractor', () => {
  /** Files of a tree, by POSIX path. */
  type Tree = Record<string, Buffer>;

  async function packTree(tree: Tree): Promise<{ gz: Buffer; tar: Buffer }> {
    const entries: TarEntry[] = Object.keys(tree)
      .sort()
      .map((name) => ({ path: name, type: 'file', size: tree[name]!.length, executable: false, source: tree[name]! }));
    const tar: Buffer[] = [];
    for await (const chunk of tarStream(entries)) tar.push(Buffer.from(chunk as Buffer));
    const pool = new ChunkPool();
    const gz: Buffer[] = [];
    for await (const chunk of gzipDeterministic(tarStream(entries, { pool }), 6, pool)) gz.push(chunk as Buffer);
    return { gz: Buffer.concat(gz), tar: Buffer.concat(tar) };
  }

  async function expectSameTree(dir: string, tree: Tree): Promise<void> {
    const listed = (await fs.readdir(dir, { recursive: true, withFileTypes: true })).filter((entry) => entry.isFile());
    expect(listed.map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name))).sort()).toEqual(Object.keys(tree).sort());
    for (const [name, bytes] of Object.entries(tree)) expect((await fs.readFile(path.join(dir, name))).equals(bytes)).toBe(true);
  }

  async function roundTrip(tree: Tree): Promise<{ gz: Buffer; tar: Buffer }> {
    const packed = await packTree(tree);
    const root = await tempDir();
    const archive = path.join(root, 'p.tar.gz');
    await fs.writeFile(archive, packed.gz);
    const byTar = path.join(root, 'tar');
    await fs.mkdir(byTar);
    execFileSync('tar', ['-xzf', archive, '-C', byTar]);
    await expectSameTree(byTar, tree);
    const byExtractor = path.join(root, 'extractor');
    await extractTarball(Readable.from([packed.gz]), byExtractor, { maxBytes: 1 << 30, maxFiles: 100_000 });
    await expectSameTree(byExtractor, tree);
    return packed;
  }

  it('empty files, a file over many segments and many small files', async () => {
    const tree: Tree = { 'empty.txt': Buffer.alloc(0), 'dir/also-empty': Buffer.alloc(0), 'big/model.bin': mixed(5 * CHUNK + 12_345, 1) };
    for (let i = 0; i < 300; i++) tree[`many/f${i}.txt`] = mixed(100 + i * 37, i);
    const { gz, tar } = await roundTrip(tree);
    // As small as gzip -6 of the same tar (the budget: at most 1.05x pigz's size).
    expect(gz.length / zlib.gzipSync(tar, { level: 6 }).length).toBeLessThan(1.01);
  });

  it('a tree whose tar is exactly one segment, and one a byte block over', async () => {
    // One file: a 512-byte header, the data (a multiple of 512), and the 1024-byte end of archive.
    const exact = { 'one.bin': mixed(CHUNK - 1536, 7) };
    const packed = await roundTrip(exact);
    expect(packed.tar.length).toBe(CHUNK);
    const over = { 'one.bin': mixed(CHUNK - 1024, 7) };
    expect((await roundTrip(over)).tar.length).toBe(CHUNK + 512);
  });

  it('reads ahead a bounded amount when nobody reads its output (memory stays flat)', async () => {
    let produced = 0;
    const source = new Readable({
      highWaterMark: CHUNK,
      read() {
        // 64 MiB in all: an unbounded reader takes all of it (and the test then ends, failing).
        if (produced === 64 * CHUNK) return void this.push(null);
        produced += CHUNK;
        this.push(mixed(CHUNK, produced));
      },
    });
    const output = gzipDeterministic(source);
    output.pause();
    // Let the pipeline fill every buffer it has, then look at how much it took from the source.
    for (let turn = 0; turn < 200; turn++) await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (let turn = 0; turn < 200; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect(produced).toBeGreaterThan(0);
    // Segments in flight (at most 8), the transform's and the source's buffers: a few dozen MiB
    // at most, where an unbounded reader takes the whole source.
    expect(produced).toBeLessThanOrEqual(32 * CHUNK);
    output.destroy();
    source.destroy();
  });
});

describe('tarStream reads each file once, as the walk measured it', () => {
  /** Packs one on-disk file whose size the walk saw as `measured`; the error, if any. */
  async function packMeasured(bytes: number, measured: number): Promise<{ tar?: Buffer; error?: Error }> {
    const dir = await tempDir();
    const file = path.join(dir, 'data.bin');
    await fs.writeFile(file, mixed(bytes, 3));
    const entries: TarEntry[] = [{ path: 'data.bin', type: 'file', size: measured, executable: false, source: file }];
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of tarStream(entries)) chunks.push(Buffer.from(chunk as Buffer));
      return { tar: Buffer.concat(chunks) };
    } catch (error) {
      return { error: error as Error };
    }
  }

  it('a file that grew or shrank since the walk is refused, naming it and both sizes', async () => {
    // Sizes at and around the 1 MiB chunk edge: the check must hold whether or not the file's
    // rest fits in the chunk being filled (the header takes the first 512 bytes).
    for (const measured of [0, 1000, CHUNK - 513, CHUNK - 512, CHUNK - 511, CHUNK + 5000]) {
      for (const actual of [measured + 1, measured + 70_000, Math.max(0, measured - 1)]) {
        if (actual === measured) continue;
        const { error } = await packMeasured(actual, measured);
        expect(error?.message, `${actual} bytes on disk, ${measured} measured`).toBe(
          `data.bin changed while it was being packed (${measured} bytes expected, ${actual} found)`,
        );
      }
    }
  });

  it('a file of the measured size is packed whole, at sizes around the chunk edge', async () => {
    for (const size of [0, 1, 511, 512, CHUNK - 513, CHUNK - 512, CHUNK - 511, CHUNK, 3 * CHUNK + 17]) {
      const { tar, error } = await packMeasured(size, size);
      expect(error).toBeUndefined();
      const listed = execFileSync('tar', ['-xO', '-f', '-'], { input: tar, maxBuffer: 64 << 20 });
      expect(listed.equals(mixed(size, 3)), `${size} bytes`).toBe(true);
    }
  });
});
