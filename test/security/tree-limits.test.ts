import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CycleError } from '../../src/errors.js';
import { selectFiles } from '../../src/pack/select.js';
import { ExtractOverLimit, extractTarball, UnsafeTarball, type ExtractLimits } from '../../src/server/extract.js';
import { DEFAULT_TREE_LIMITS } from '../../src/server/limits.js';
import { tempDir } from '../helpers/context.js';
import { longestStallMs } from '../helpers/event-loop.js';
import { settlesWithin } from '../helpers/sandbox.js';
import { paxHeader, rawTarGz, type RawEntry } from '../helpers/tarballs.js';

/*
 * Issue 18, High 2, Medium 3 and Medium 4: a small push must not cost the server minutes or its
 * disk. Its shape (depth, name length, links) and its expansion are checked as entries arrive,
 * before work proportional to them; the server's walks of a stored tree stay within the same
 * limits and never hold the event loop.
 */

let base: string;
let tree: string;
const LIMITS: ExtractLimits = { maxBytes: 1 << 30, maxFiles: 100_000 };
/** What a `/health` request may wait, at most, while the server works on a tree. */
const STALL_BUDGET_MS = 100;

beforeEach(async () => {
  base = await tempDir('cycle-sec-tree-limits-');
  tree = path.join(base, 'tree');
});
afterEach(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

/** An entry whose name may be longer than ustar's 100 bytes (a pax header first). */
function named(entry: RawEntry): RawEntry[] {
  return Buffer.byteLength(entry.name) > 99 ? [paxHeader({ path: entry.name }), { ...entry, name: 'x' }] : [entry];
}

/** `depth` nested folders, one entry per level (as tar writes them), then `leaves` at the bottom. */
function deepTree(depth: number, leaves: (bottom: string) => RawEntry[], component = 'd'): RawEntry[] {
  const entries: RawEntry[] = [];
  let prefix = '';
  for (let level = 0; level < depth; level++) {
    prefix += `${component}/`;
    entries.push(...named({ name: prefix, type: '5' }));
  }
  for (const leaf of leaves(prefix)) entries.push(...named(leaf));
  return entries;
}

async function refusal(gz: Buffer, limits: ExtractLimits = LIMITS): Promise<unknown> {
  return settlesWithin(10_000, 'extractTarball', extractTarball(Readable.from([gz]), tree, limits)).then(
    () => undefined,
    (error: unknown) => error,
  );
}

describe('a push is refused at the first entry past the tree limits, before work proportional to it', () => {
  it("the issue's push (500 symlinks 1,900 folders deep, ~11 KB) is refused at its first folder past the depth limit, at once", async () => {
    const gz = rawTarGz(deepTree(1_900, (bottom) => Array.from({ length: 500 }, (_, i): RawEntry => ({ name: `${bottom}l${i}`, type: '2', linkname: '.' }))));
    expect(gz.length).toBeLessThan(64 * 1024);
    const started = performance.now();
    const outcome = await refusal(gz);
    expect(outcome).toBeInstanceOf(UnsafeTarball);
    expect((outcome as Error).message).toMatch(/is 129 folders deep; this server takes at most 128 \(CYCLE_SERVER_MAX_DEPTH\)/);
    expect(performance.now() - started).toBeLessThan(5_000);
    await expect(fs.access(tree)).rejects.toThrow();
  });

  it('a tree deeper than the limit is refused by depth, naming the entry, the limit and the setting', async () => {
    const depth = DEFAULT_TREE_LIMITS.maxDepth + 1;
    const outcome = await refusal(rawTarGz(deepTree(depth, (bottom) => [{ name: `${bottom}f.txt`, body: 'x' }])));
    expect(outcome).toBeInstanceOf(UnsafeTarball);
    expect((outcome as Error).message).toMatch(new RegExp(`is ${depth} folders deep; this server takes at most ${depth - 1} \\(CYCLE_SERVER_MAX_DEPTH\\)`));
    await expect(fs.access(tree)).rejects.toThrow();
  });

  it('a file at the deepest allowed level is kept (the limit counts folders)', async () => {
    const depth = DEFAULT_TREE_LIMITS.maxDepth;
    await extractTarball(Readable.from([rawTarGz(deepTree(depth, (bottom) => [{ name: `${bottom}f.txt`, body: 'x' }]))]), tree, LIMITS);
    expect(await fs.readFile(path.join(tree, 'd/'.repeat(depth), 'f.txt'), 'utf8')).toBe('x');
  });

  it('more symlinks than the limit are refused at the first one past it', async () => {
    const links = Array.from({ length: 6 }, (_, i): RawEntry => ({ name: `l${i}`, type: '2', linkname: '.' }));
    const outcome = await refusal(rawTarGz(links), { ...LIMITS, maxSymlinks: 5 });
    expect(outcome).toBeInstanceOf(UnsafeTarball);
    expect((outcome as Error).message).toMatch(/entry "l5": more than 5 symlinks; .*CYCLE_SERVER_MAX_SYMLINKS/);
  });

  it('a name longer than the limit is refused by its length, naming the limit and the setting', async () => {
    const outcome = await refusal(rawTarGz([paxHeader({ path: `${'n'.repeat(200)}/`.repeat(6) }), { name: 'x/', type: '5' }]));
    expect(outcome).toBeInstanceOf(UnsafeTarball);
    expect((outcome as Error).message).toMatch(/its name is 1206 bytes; this server takes at most 1024 \(CYCLE_SERVER_MAX_PATH_BYTES\)/);
  });

  it('a symlink whose target is longer than the name limit is refused before it is followed', async () => {
    const target = './'.repeat(600);
    const outcome = await refusal(rawTarGz([paxHeader({ linkpath: target }), { name: 'l', type: '2', linkname: 'x' }]));
    expect(outcome).toBeInstanceOf(UnsafeTarball);
    expect((outcome as Error).message).toMatch(/its link target is 1200 bytes; this server takes at most 1024/);
  });
});

describe('deep trees cost time linear in their entries (Medium 4)', () => {
  it('5,000 entries 1,000 folders deep (limits raised): each looks up its parent once, not every prefix', async () => {
    // The old writer rebuilt and looked up every folder prefix of every entry: 5,000 x 1,000
    // prefixes of up to 2,000 bytes is a minute of CPU. Repeated folder entries cost nothing else.
    const depth = 1_000;
    const chain = deepTree(depth, () => []);
    const again = named({ name: 'd/'.repeat(depth), type: '5' });
    const entries = [...chain, ...Array.from({ length: 5_000 }, () => again).flat()];
    const before = process.cpuUsage();
    await settlesWithin(
      60_000,
      'extractTarball',
      extractTarball(Readable.from([rawTarGz(entries)]), tree, {
        ...LIMITS,
        maxDepth: 4_000,
        maxPathBytes: 8_192,
        maxFiles: 50_000,
        maxCompressionRatio: 100_000,
      }),
    );
    const used = process.cpuUsage(before);
    expect((used.user + used.system) / 1e6).toBeLessThan(6);
  }, 90_000);
});

describe('a gzip bomb is refused by its compression ratio (Medium 3)', () => {
  it('zeros that expand past the allowance at more than the ratio are refused with a 413, naming the ratio and the setting', async () => {
    const gz = rawTarGz([{ name: 'zeros.bin', body: Buffer.alloc(32 << 20) }]);
    expect(gz.length).toBeLessThan(256 * 1024);
    const outcome = await refusal(gz, { ...LIMITS, compressionAllowanceBytes: 1 << 20 });
    expect(outcome).toBeInstanceOf(ExtractOverLimit);
    expect((outcome as ExtractOverLimit).kind).toBe('too-large');
    expect((outcome as ExtractOverLimit).code).toBe('compression_ratio');
    expect((outcome as Error).message).toMatch(/expands more than 200 times .*cycle server --max-compression-ratio/);
    await expect(fs.access(tree)).rejects.toThrow();
  });

  it('an ordinary tree (text that compresses well, random bytes) is kept', async () => {
    const text = Array.from({ length: 20_000 }, (_, i) => `line ${i}: def f${i}(x): return x * ${i}\n`).join('');
    const entries: RawEntry[] = [
      { name: 'src.py', body: text },
      { name: 'weights.bin', body: randomBytes(256 << 10) },
    ];
    await extractTarball(Readable.from([rawTarGz(entries)]), tree, { ...LIMITS, compressionAllowanceBytes: 64 << 10 });
    expect((await fs.stat(path.join(tree, 'src.py'))).size).toBe(Buffer.byteLength(text));
  });
});

/** `depth` folders named `d`, with `links` symlinks (to folders inside) and `files` files at the bottom. */
async function deepFolderOnDisk(root: string, depth: number, links: number, files: number): Promise<string> {
  const bottom = path.join(root, ...Array.from({ length: depth }, () => 'd'));
  await fs.mkdir(bottom, { recursive: true });
  for (let i = 0; i < links; i++) await fs.symlink(i % 2 ? '..' : '.', path.join(bottom, `l${i}`));
  for (let i = 0; i < files; i++) await fs.writeFile(path.join(bottom, `f${i}.txt`), 'x');
  return bottom;
}

describe("the server's walk of a stored tree (High 2)", () => {
  it('a tree within the limits with a thousand deep links never holds the event loop', async () => {
    const root = path.join(base, 'stored');
    // Each link's real path costs a lookup per folder above it: about a second of sync calls in all.
    await deepFolderOnDisk(root, DEFAULT_TREE_LIMITS.maxDepth - 8, 1_000, 200);
    const { stallMs, value } = await longestStallMs(() => selectFiles(root, { rules: false, limits: DEFAULT_TREE_LIMITS }));
    expect(value.entries.filter((e) => e.type === 'symlink')).toHaveLength(1_000);
    expect(stallMs).toBeLessThan(STALL_BUDGET_MS);
  }, 60_000);

  it('a tree past the limits (a revision stored before them) is refused at the first folder too deep, naming the limit', async () => {
    const root = path.join(base, 'stored');
    await deepFolderOnDisk(root, DEFAULT_TREE_LIMITS.maxDepth + 20, 10, 1);
    const outcome = await selectFiles(root, { rules: false, limits: DEFAULT_TREE_LIMITS }).catch((error: unknown) => error);
    expect(outcome).toBeInstanceOf(CycleError);
    expect((outcome as Error).message).toMatch(
      new RegExp(`${DEFAULT_TREE_LIMITS.maxDepth + 1} folders deep; at most ${DEFAULT_TREE_LIMITS.maxDepth} are allowed`),
    );
  });

  it('the CLI walk (no limits) still selects such a tree', async () => {
    const root = path.join(base, 'mine');
    await deepFolderOnDisk(root, DEFAULT_TREE_LIMITS.maxDepth + 20, 2, 1);
    const selection = await selectFiles(root);
    expect(selection.fileCount).toBe(1);
  });
});
