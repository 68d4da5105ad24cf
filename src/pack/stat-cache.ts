import fs from 'node:fs';
import { mapLimit, sha256File, writeFileAtomic } from '../util/fs.js';

export interface FileDigest {
  digest: string;
  size: number;
  executable: boolean;
}

/**
 * The cache file, binary so that a warm run of 20,000 files reads it without creating 20,000
 * objects (JSON cost ~25 ms to parse and ~50 ms of garbage collection for that tree):
 *   magic "CYSTAT03" | uint32 LE count | uint32 LE byte length of the paths |
 *   count × 4 float64 LE (size, mtime ms, ctime ms, inode) | count × 32 bytes sha256 |
 *   the paths, UTF-8, each followed by NUL (a character no path holds).
 * The entries are in the order the files were asked about, so the next run (same files, same
 * order) compares entry i with file i and builds no lookup table.
 */
const MAGIC = 'CYSTAT03';
const HEADER_BYTES = 16;
const NUMBERS_PER_ENTRY = 4;
const DIGEST_BYTES = 32;
/** What digestAll keeps of each stat: size, mtime ms, ctime ms, inode, mode. */
const STAT_FIELDS = 5;

interface Entries {
  keys: string[];
  numbers: Float64Array;
  digests: Buffer;
}

function decode(data: Buffer): Entries | undefined {
  if (data.length < HEADER_BYTES || data.toString('latin1', 0, 8) !== MAGIC) return undefined;
  const count = data.readUInt32LE(8);
  const pathBytes = data.readUInt32LE(12);
  const numbersStart = HEADER_BYTES;
  const digestsStart = numbersStart + count * NUMBERS_PER_ENTRY * 8;
  const pathsStart = digestsStart + count * DIGEST_BYTES;
  if (data.length !== pathsStart + pathBytes) return undefined;
  // Copied out: a Float64Array needs 8-byte alignment, which a Buffer's offset does not promise.
  const numbers = new Float64Array(count * NUMBERS_PER_ENTRY);
  new Uint8Array(numbers.buffer).set(data.subarray(numbersStart, digestsStart));
  const keys = count === 0 ? [] : data.toString('utf8', pathsStart, pathsStart + pathBytes - 1).split('\0');
  if (keys.length !== count) return undefined;
  return { keys, numbers, digests: data.subarray(digestsStart, pathsStart) };
}

function encode(keys: readonly string[], numbers: readonly number[], digests: readonly string[]): Buffer {
  const paths = Buffer.from(keys.length === 0 ? '' : `${keys.join('\0')}\0`, 'utf8');
  const numbersBytes = Buffer.from(new Float64Array(numbers).buffer);
  const digestBytes = Buffer.from(digests.join(''), 'hex');
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(MAGIC, 0, 'latin1');
  header.writeUInt32LE(keys.length, 8);
  header.writeUInt32LE(paths.length, 12);
  return Buffer.concat([header, numbersBytes, digestBytes, paths]);
}

/**
 * Remembers file digests by (size, mtime, ctime, inode), so an unchanged tree is hashed
 * with stats alone (ctime catches a rewrite that restores the mtime, and a chmod). A file changed
 * within the last two seconds is not remembered: on a coarse-clock filesystem a later write in
 * the same tick would keep the same mtime. Each run keeps exactly the files it asked about.
 */
export class StatCache {
  hits = 0;
  misses = 0;
  private dirty = false;
  private byKey: Map<string, number> | undefined;
  /** Files asked about so far (the position the next one would have in an unchanged cache). */
  private asked = 0;
  /** What the next save writes: the files asked about, in order. */
  private readonly nextKeys: string[] = [];
  private readonly nextNumbers: number[] = [];
  private readonly nextDigests: string[] = [];

  private constructor(
    private readonly file: string | undefined,
    private readonly entries: Entries,
    private readonly now: () => number,
  ) {}

  static async load(file: string | undefined, now: () => number = Date.now): Promise<StatCache> {
    const data = file ? await fs.promises.readFile(file).catch(() => undefined) : undefined;
    const entries = (data && decode(data)) ?? { keys: [], numbers: new Float64Array(0), digests: Buffer.alloc(0) };
    return new StatCache(file, entries, now);
  }

  /** The index of `key` in the loaded entries: position `expected` when the order still holds. */
  private indexOf(key: string, expected: number): number {
    if (this.entries.keys[expected] === key) return expected;
    this.byKey ??= new Map(this.entries.keys.map((k, i) => [k, i]));
    return this.byKey.get(key) ?? -1;
  }

  /**
   * The digest when the cache knows the file as it is now (same size, times and inode), else
   * undefined. `stat` holds (size, mtime, ctime, inode) at `at`.
   */
  private lookup(key: string, stat: Float64Array, at: number, position: number): string | undefined {
    const index = this.indexOf(key, position);
    if (index < 0) return undefined;
    const n = this.entries.numbers;
    const cached = index * NUMBERS_PER_ENTRY;
    if (n[cached] !== stat[at] || n[cached + 1] !== stat[at + 1] || n[cached + 2] !== stat[at + 2] || n[cached + 3] !== stat[at + 3]) return undefined;
    if (index !== position) this.dirty = true; // same entry, new place: rewrite in the new order
    return this.entries.digests.toString('hex', index * DIGEST_BYTES, (index + 1) * DIGEST_BYTES);
  }

  /**
   * Digests of many files (symlinks followed), remembered by their project-relative `path`: hits answered with a stat alone, misses read a
   * few at a time. The stats are synchronous on purpose: a warm run is 20,000 of them, and a
   * sync stat is the cheapest way to do them; their numbers go straight into one typed array
   * (20,000 live Stats objects cost more in garbage collection than the stats themselves).
   */
  async digestAll(files: ReadonlyArray<{ path: string; absolute: string }>, concurrency = 8): Promise<FileDigest[]> {
    const stats = new Float64Array(files.length * STAT_FIELDS);
    const digests = new Array<string | undefined>(files.length);
    const misses: number[] = [];
    for (let index = 0; index < files.length; index++) {
      const file = files[index]!;
      const stat = fs.statSync(file.absolute);
      const at = index * STAT_FIELDS;
      stats[at] = stat.size;
      stats[at + 1] = stat.mtimeMs;
      stats[at + 2] = stat.ctimeMs;
      stats[at + 3] = stat.ino;
      stats[at + 4] = stat.mode;
      const digest = this.lookup(file.path, stats, at, this.asked + index);
      if (digest === undefined) misses.push(index);
      digests[index] = digest;
    }
    this.asked += files.length;
    this.hits += files.length - misses.length;
    this.misses += misses.length;
    await mapLimit(misses, concurrency, async (index) => {
      digests[index] = await sha256File(files[index]!.absolute, stats[index * STAT_FIELDS]!);
    });
    if (misses.length > 0) this.dirty = true;
    const fresh = this.now() - 2000;
    const missed = new Set(misses);
    return files.map((file, index) => {
      const at = index * STAT_FIELDS;
      const digest = digests[index]!;
      // A file changed in the last two seconds is not remembered (see above).
      if (!missed.has(index) || Math.max(stats[at + 1]!, stats[at + 2]!) < fresh) {
        this.nextKeys.push(file.path);
        this.nextNumbers.push(stats[at]!, stats[at + 1]!, stats[at + 2]!, stats[at + 3]!);
        this.nextDigests.push(digest);
      }
      return { digest, size: stats[at]!, executable: (stats[at + 4]! & 0o100) !== 0 };
    });
  }

  /** Writes the cache if it changed: exactly the files asked about in this run. */
  async save(): Promise<void> {
    if (this.nextKeys.length !== this.entries.keys.length) this.dirty = true;
    if (!this.file || !this.dirty) return;
    await writeFileAtomic(this.file, encode(this.nextKeys, this.nextNumbers, this.nextDigests));
    this.dirty = false;
  }
}
