import fs from 'node:fs';
import { DEFAULT_SLICE_MS, pacer, WALK_STEPS_PER_CLOCK_READ } from '../util/pace.js';
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
  count: number;
  /** The paths, each followed by NUL: read in order without splitting into 20,000 strings. */
  keys: string;
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
  const keys = data.toString('utf8', pathsStart, pathsStart + pathBytes);
  if (count > 0 && !keys.endsWith('\0')) return undefined;
  return { count, keys, numbers, digests: data.subarray(digestsStart, pathsStart) };
}

/** The files of one digestAll call, with their stats and digests, kept for save(). */
interface Batch {
  files: ReadonlyArray<{ path: string }>;
  stats: Float64Array;
  digests: string[];
  /** 0 for a file not to remember (changed in the last two seconds). */
  remember: Uint8Array;
}

function encode(batches: readonly Batch[]): Buffer {
  const keys: string[] = [];
  const numbers: number[] = [];
  const digests: string[] = [];
  for (const batch of batches) {
    batch.files.forEach((file, index) => {
      if (!batch.remember[index]) return;
      const at = index * STAT_FIELDS;
      keys.push(file.path);
      numbers.push(batch.stats[at]!, batch.stats[at + 1]!, batch.stats[at + 2]!, batch.stats[at + 3]!);
      digests.push(batch.digests[index]!);
    });
  }
  const paths = Buffer.from(keys.length === 0 ? '' : `${keys.join('\0')}\0`, 'utf8');
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(MAGIC, 0, 'latin1');
  header.writeUInt32LE(keys.length, 8);
  header.writeUInt32LE(paths.length, 12);
  return Buffer.concat([header, Buffer.from(new Float64Array(numbers).buffer), Buffer.from(digests.join(''), 'hex'), paths]);
}

/** digestTable's answer, by the files' positions: no object per file (see Batch). */
export class DigestTable {
  constructor(
    private readonly digests: readonly string[],
    private readonly stats: Float64Array,
  ) {}
  digest(index: number): string {
    return this.digests[index]!;
  }
  size(index: number): number {
    return this.stats[index * STAT_FIELDS]!;
  }
  executable(index: number): boolean {
    return (this.stats[index * STAT_FIELDS + 4]! & 0o100) !== 0;
  }
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
  /**
   * Files asked about so far: the position the next one has in an unchanged cache. Files are
   * asked about one after another, so `nextOffset` is where that entry's path starts in keys.
   */
  private next = 0;
  private nextOffset = 0;
  /** What the next save writes, only built then: the files asked about, in order. */
  private readonly batches: Batch[] = [];
  private remembered = 0;
  /**
   * The loaded digests as one hex string, made on the first hit: a hit is then a slice of it
   * (20,000 `toString('hex', ...)` calls cost ~50 ms of a warm `project hash`; one costs ~1 ms).
   */
  private digestsHex: string | undefined;

  private constructor(
    private readonly file: string | undefined,
    private readonly entries: Entries,
    private readonly now: () => number,
  ) {}

  static async load(file: string | undefined, now: () => number = Date.now): Promise<StatCache> {
    const data = file ? await fs.promises.readFile(file).catch(() => undefined) : undefined;
    const entries = (data && decode(data)) ?? { count: 0, keys: '', numbers: new Float64Array(0), digests: Buffer.alloc(0) };
    return new StatCache(file, entries, now);
  }

  /** The index of `key` in the loaded entries: `position` itself when the order still holds. */
  private indexOf(key: string, position: number): number {
    const { keys, count } = this.entries;
    if (position < count) {
      const offset = this.nextOffset;
      const same = keys.startsWith(key, offset) && keys.charCodeAt(offset + key.length) === 0;
      this.nextOffset = same ? offset + key.length + 1 : keys.indexOf('\0', offset) + 1;
      if (same) return position;
    }
    this.byKey ??= new Map(
      keys
        .slice(0, -1)
        .split('\0')
        .map((k, i) => [k, i]),
    );
    return this.byKey.get(key) ?? -1;
  }

  /**
   * The digest when the cache knows the file as it is now (same size, times and inode), else
   * undefined. `stat` holds (size, mtime, ctime, inode) at `at`.
   */
  private lookup(key: string, stat: Float64Array, at: number): string | undefined {
    const position = this.next++;
    const index = this.indexOf(key, position);
    if (index < 0) return undefined;
    const n = this.entries.numbers;
    const cached = index * NUMBERS_PER_ENTRY;
    if (n[cached] !== stat[at] || n[cached + 1] !== stat[at + 1] || n[cached + 2] !== stat[at + 2] || n[cached + 3] !== stat[at + 3]) return undefined;
    if (index !== position) this.dirty = true; // same entry, new place: rewrite in the new order
    this.digestsHex ??= this.entries.digests.toString('hex');
    return this.digestsHex.slice(index * DIGEST_BYTES * 2, (index + 1) * DIGEST_BYTES * 2);
  }

  /**
   * Digests of many files (symlinks followed), remembered by their project-relative `path`:
   * hits answered with a stat alone, misses read a few at a time. The stats are synchronous on
   * purpose: a warm run is 20,000 of them, and a sync stat is the cheapest way to do them; their
   * numbers go straight into one typed array (20,000 live Stats objects cost more in garbage
   * collection than the stats themselves).
   */
  async digestTable(files: ReadonlyArray<{ path: string; absolute: string }>, concurrency = 8): Promise<DigestTable> {
    const stats = new Float64Array(files.length * STAT_FIELDS);
    const digests = new Array<string | undefined>(files.length);
    const misses: number[] = [];
    const pace = pacer(DEFAULT_SLICE_MS, WALK_STEPS_PER_CLOCK_READ); // the server hashes pushed trees: never hold its event loop long
    for (let index = 0; index < files.length; index++) {
      const wait = pace();
      if (wait) await wait;
      const file = files[index]!;
      const stat = fs.statSync(file.absolute);
      const at = index * STAT_FIELDS;
      stats[at] = stat.size;
      stats[at + 1] = stat.mtimeMs;
      stats[at + 2] = stat.ctimeMs;
      stats[at + 3] = stat.ino;
      stats[at + 4] = stat.mode;
      const digest = this.lookup(file.path, stats, at);
      if (digest === undefined) misses.push(index);
      digests[index] = digest;
    }
    this.hits += files.length - misses.length;
    this.misses += misses.length;
    await mapLimit(misses, concurrency, async (index) => {
      digests[index] = await sha256File(files[index]!.absolute, stats[index * STAT_FIELDS]!);
    });
    if (misses.length > 0) this.dirty = true;
    const fresh = this.now() - 2000;
    const remember = new Uint8Array(files.length).fill(1);
    this.remembered += files.length;
    for (const index of misses) {
      // A file changed in the last two seconds is not remembered (see above).
      const at = index * STAT_FIELDS;
      if (Math.max(stats[at + 1]!, stats[at + 2]!) >= fresh) {
        remember[index] = 0;
        this.remembered--;
      }
    }
    const known = digests as string[];
    this.batches.push({ files, stats, digests: known, remember });
    return new DigestTable(known, stats);
  }

  /** digestTable, one object per file (for callers that keep few files). */
  async digestAll(files: ReadonlyArray<{ path: string; absolute: string }>, concurrency = 8): Promise<FileDigest[]> {
    const table = await this.digestTable(files, concurrency);
    return files.map((_, index) => ({ digest: table.digest(index), size: table.size(index), executable: table.executable(index) }));
  }

  /** Writes the cache if it changed: exactly the files asked about in this run. */
  async save(): Promise<void> {
    if (this.remembered !== this.entries.count) this.dirty = true;
    if (!this.file || !this.dirty) return;
    await writeFileAtomic(this.file, encode(this.batches));
    this.dirty = false;
  }
}
