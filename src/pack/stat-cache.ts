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
 *   magic "CYSTAT04" | uint32 LE count | uint32 LE byte length of the paths |
 *   uint32 LE byte length of the memo | uint32 LE zero |
 *   count × 5 float64 LE (size, mtime ms, ctime ms, inode, mode) | count × 32 bytes sha256 |
 *   the paths, UTF-8, each followed by NUL (a character no path holds) | the memo, UTF-8.
 * The entries are in the order the files were asked about, so the next run (same files, same
 * order) compares entry i with file i and builds no lookup table. The memo is the caller's
 * (the build hash of exactly these entries), trusted only when a run finds them all unchanged.
 */
const MAGIC = 'CYSTAT04';
const HEADER_BYTES = 24;
const DIGEST_BYTES = 32;
/** What is kept of each stat, in the file and in memory: size, mtime ms, ctime ms, inode, mode. */
const STAT_FIELDS = 5;

interface Entries {
  count: number;
  /** The paths, each followed by NUL: read in order without splitting into 20,000 strings. */
  keys: string;
  numbers: Float64Array;
  digests: Buffer;
  memo: string;
}

const EMPTY: Entries = { count: 0, keys: '', numbers: new Float64Array(0), digests: Buffer.alloc(0), memo: '' };

function decode(data: Buffer): Entries | undefined {
  if (data.length < HEADER_BYTES || data.toString('latin1', 0, 8) !== MAGIC) return undefined;
  const count = data.readUInt32LE(8);
  const pathBytes = data.readUInt32LE(12);
  const memoBytes = data.readUInt32LE(16);
  const numbersStart = HEADER_BYTES;
  const digestsStart = numbersStart + count * STAT_FIELDS * 8;
  const pathsStart = digestsStart + count * DIGEST_BYTES;
  const memoStart = pathsStart + pathBytes;
  if (data.length !== memoStart + memoBytes) return undefined;
  // Copied out: a Float64Array needs 8-byte alignment, which a Buffer's offset does not promise.
  const numbers = new Float64Array(count * STAT_FIELDS);
  new Uint8Array(numbers.buffer).set(data.subarray(numbersStart, digestsStart));
  const keys = data.toString('utf8', pathsStart, memoStart);
  if (count > 0 && !keys.endsWith('\0')) return undefined;
  return { count, keys, numbers, digests: data.subarray(digestsStart, pathsStart), memo: data.toString('utf8', memoStart) };
}

/** One digestTable call's stat loop, handed from one synchronous run of it to the next. */
interface StatRun {
  files: ReadonlyArray<{ path: string; absolute: string }>;
  stats: Float64Array;
  cached: Int32Array;
  misses: number[];
  pace: () => Promise<void> | undefined;
  wait: Promise<void> | undefined;
}

/** The files of one digestTable call, with their stats and digests, kept for save(). */
interface Batch {
  files: ReadonlyArray<{ path: string }>;
  stats: Float64Array;
  table: DigestTable;
  /** 0 for a file not to remember (changed in the last two seconds). */
  remember: Uint8Array;
}

function encode(batches: readonly Batch[], memo: string): Buffer {
  let count = 0;
  for (const batch of batches) for (let i = 0; i < batch.files.length; i++) count += batch.remember[i]!;
  const numbers = new Float64Array(count * STAT_FIELDS);
  const digests = Buffer.alloc(count * DIGEST_BYTES);
  const keys: string[] = [];
  for (const batch of batches) {
    batch.files.forEach((file, index) => {
      if (!batch.remember[index]) return;
      const entry = keys.length;
      keys.push(file.path);
      numbers.set(batch.stats.subarray(index * STAT_FIELDS, (index + 1) * STAT_FIELDS), entry * STAT_FIELDS);
      batch.table.copyDigest(index, digests, entry * DIGEST_BYTES);
    });
  }
  const paths = Buffer.from(keys.length === 0 ? '' : `${keys.join('\0')}\0`, 'utf8');
  const memoBytes = Buffer.from(memo, 'utf8');
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(MAGIC, 0, 'latin1');
  header.writeUInt32LE(count, 8);
  header.writeUInt32LE(paths.length, 12);
  header.writeUInt32LE(memoBytes.length, 16);
  return Buffer.concat([header, Buffer.from(numbers.buffer), digests, paths, memoBytes]);
}

/**
 * digestTable's answer, by the files' positions: no object and no string per file. A hit keeps
 * the position of its cached entry (its digest is sliced from the cache when asked for), a miss
 * its computed digest.
 */
export class DigestTable {
  constructor(
    private readonly cache: StatCache,
    /** The cached entry of each file, or -1 where its digest was computed. */
    private readonly cached: Int32Array,
    private readonly computed: ReadonlyArray<string | undefined>,
    private readonly stats: Float64Array,
  ) {}
  digest(index: number): string {
    const entry = this.cached[index]!;
    return entry < 0 ? this.computed[index]! : this.cache.cachedDigest(entry);
  }
  /** The digest's 32 bytes written into `target` at `offset`. */
  copyDigest(index: number, target: Buffer, offset: number): void {
    const entry = this.cached[index]!;
    if (entry < 0) target.write(this.computed[index]!, offset, DIGEST_BYTES, 'hex');
    else this.cache.copyCachedDigest(entry, target, offset);
  }
  size(index: number): number {
    return this.stats[index * STAT_FIELDS]!;
  }
  executable(index: number): boolean {
    return (this.stats[index * STAT_FIELDS + 4]! & 0o100) !== 0;
  }
}

/**
 * Remembers file digests by (size, mtime, ctime, inode, mode), so an unchanged tree is hashed
 * with stats alone (ctime catches a rewrite that restores the mtime, and a chmod). A file changed
 * within the last two seconds is not remembered: on a coarse-clock filesystem a later write in
 * the same tick would keep the same mtime. Each run keeps exactly the files it asked about.
 */
export class StatCache {
  hits = 0;
  misses = 0;
  /** A file was found at another position than its entry's (the order changed). */
  private moved = false;
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
   * The loaded digests as one hex string, made on the first digest asked for: a digest is then
   * a slice of it (20,000 `toString('hex', ...)` calls cost ~50 ms; one costs ~1 ms).
   */
  private digestsHex: string | undefined;

  private constructor(
    private readonly file: string | undefined,
    private readonly entries: Entries,
    private readonly now: () => number,
  ) {}

  static async load(file: string | undefined, now: () => number = Date.now): Promise<StatCache> {
    const data = file ? await fs.promises.readFile(file).catch(() => undefined) : undefined;
    return new StatCache(file, (data && decode(data)) ?? EMPTY, now);
  }

  /** What the last save was given to keep beside the entries ('' if nothing). */
  get memo(): string {
    return this.entries.memo;
  }

  /**
   * Every file asked about so far is exactly the cached entry at its position, unchanged, and
   * every entry was asked about: the files, their order, stats and digests are those the memo
   * was saved with.
   */
  get unchanged(): boolean {
    return this.misses === 0 && !this.moved && this.next === this.entries.count;
  }

  /** The cached digest of entry `entry`, as hex. */
  cachedDigest(entry: number): string {
    this.digestsHex ??= this.entries.digests.toString('hex');
    return this.digestsHex.slice(entry * DIGEST_BYTES * 2, (entry + 1) * DIGEST_BYTES * 2);
  }

  copyCachedDigest(entry: number, target: Buffer, offset: number): void {
    this.entries.digests.copy(target, offset, entry * DIGEST_BYTES, (entry + 1) * DIGEST_BYTES);
  }

  /** The index of `key` in the loaded entries: `position` itself when the order still holds. */
  private indexOf(key: string, position: number): number {
    const { keys, count } = this.entries;
    if (position < count) {
      const offset = this.nextOffset;
      const same = keys.charCodeAt(offset + key.length) === 0 && keys.startsWith(key, offset);
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
   * The entry that knows the file as it is now (same size, times, inode and mode), else -1.
   * `stat` holds the file's STAT_FIELDS numbers at `at`.
   */
  private lookup(key: string, stat: Float64Array, at: number): number {
    const position = this.next++;
    const index = this.indexOf(key, position);
    if (index < 0) return -1;
    const n = this.entries.numbers;
    const cached = index * STAT_FIELDS;
    for (let field = 0; field < STAT_FIELDS; field++) if (n[cached + field] !== stat[at + field]) return -1;
    if (index !== position) this.moved = true; // same entry, new place: rewrite in the new order
    return index;
  }

  /**
   * Digests of many files (symlinks followed), remembered by their project-relative `path`:
   * hits answered with a stat alone, misses read a few at a time. The stats are synchronous on
   * purpose: a warm run is 20,000 of them, and a sync stat is the cheapest way to do them; their
   * numbers go straight into one typed array (20,000 live Stats objects cost more in garbage
   * collection than the stats themselves), and a hit keeps only the position of its entry.
   */
  async digestTable(files: ReadonlyArray<{ path: string; absolute: string }>, concurrency = 8): Promise<DigestTable> {
    const stats = new Float64Array(files.length * STAT_FIELDS);
    const cached = new Int32Array(files.length);
    const computed = new Array<string | undefined>(files.length);
    const misses: number[] = [];
    const pace = pacer(DEFAULT_SLICE_MS, WALK_STEPS_PER_CLOCK_READ); // the server hashes pushed trees: never hold its event loop long
    const run: StatRun = { files, stats, cached, misses, pace, wait: undefined };
    for (let index = 0; index < files.length; ) {
      index = this.statRun(run, index);
      if (run.wait) await run.wait;
    }
    this.hits += files.length - misses.length;
    this.misses += misses.length;
    await mapLimit(misses, concurrency, async (index) => {
      computed[index] = await sha256File(files[index]!.absolute, stats[index * STAT_FIELDS]!);
    });
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
    const table = new DigestTable(this, cached, computed, stats);
    this.batches.push({ files, stats, table, remember });
    return table;
  }

  /**
   * Stats files from `start` on and looks each up, until the end or until the pace asks for a
   * yield (left in `run.wait`); returns where to go on. Synchronous, so that the engine compiles
   * this loop on its own rather than the whole async digestTable (a loop in an async function is
   * compiled with its suspension points, and was compiled twice).
   */
  private statRun(run: StatRun, start: number): number {
    const { files, stats, cached, misses, pace } = run;
    run.wait = undefined;
    for (let index = start; index < files.length; index++) {
      const file = files[index]!;
      const stat = fs.statSync(file.absolute);
      const at = index * STAT_FIELDS;
      stats[at] = stat.size;
      stats[at + 1] = stat.mtimeMs;
      stats[at + 2] = stat.ctimeMs;
      stats[at + 3] = stat.ino;
      stats[at + 4] = stat.mode;
      const entry = this.lookup(file.path, stats, at);
      if (entry < 0) misses.push(index);
      cached[index] = entry;
      run.wait = pace();
      if (run.wait) return index + 1;
    }
    return files.length;
  }

  /** digestTable, one object per file (for callers that keep few files). */
  async digestAll(files: ReadonlyArray<{ path: string; absolute: string }>, concurrency = 8): Promise<FileDigest[]> {
    const table = await this.digestTable(files, concurrency);
    return files.map((_, index) => ({ digest: table.digest(index), size: table.size(index), executable: table.executable(index) }));
  }

  /**
   * Writes the cache if it changed: exactly the files asked about in this run, and `memo`, which
   * describes those files (kept until a save that changes the entries, dropped then unless
   * given again). A memo is kept only when every file asked about is remembered: otherwise the
   * entries are not the files it describes.
   */
  async save(memo?: string): Promise<void> {
    if (!this.file) return;
    const changed = this.misses > 0 || this.moved || this.remembered !== this.entries.count;
    const kept = memo !== undefined && this.remembered === this.next ? memo : changed ? '' : this.entries.memo;
    if (!changed && kept === this.entries.memo) return;
    await writeFileAtomic(this.file, encode(this.batches, kept));
  }
}
