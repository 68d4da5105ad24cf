import fs from 'node:fs';
import { mapLimit, readJsonFile, sha256File, writeFileAtomic } from '../util/fs.js';

/** [size, mtime ms, ctime ms, inode, sha256]; times are floats with sub-microsecond precision. */
type Entry = [number, number, number, number, string];

interface CacheFile {
  version: 2;
  entries: Record<string, Entry>;
}

export interface FileDigest {
  digest: string;
  size: number;
  executable: boolean;
}

/**
 * Remembers file digests by (size, mtime, ctime, inode), so an unchanged tree is hashed
 * with stats alone (ctime catches a rewrite that restores the mtime, and a chmod). A file changed within the last two seconds is not remembered: on a
 * coarse-clock filesystem a later write in the same tick would keep the same mtime.
 */
export class StatCache {
  hits = 0;
  misses = 0;
  private dirty = false;
  private readonly used = new Set<string>();

  private constructor(
    private readonly file: string | undefined,
    private readonly entries: Map<string, Entry>,
    private readonly now: () => number,
  ) {}

  static async load(file: string | undefined, now: () => number = Date.now): Promise<StatCache> {
    const data = file ? await readJsonFile<CacheFile>(file) : undefined;
    const entries = new Map<string, Entry>(data?.version === 2 ? Object.entries(data.entries) : []);
    return new StatCache(file, entries, now);
  }

  /**
   * The digest when the cache knows the file as it is now (a stat, no read), else what is
   * needed to read it. Synchronous on purpose: a warm run is 20,000 of these, and a sync stat
   * is the cheapest way to do them.
   */
  lookup(key: string, absolute: string): { hit: FileDigest } | { miss: fs.Stats } {
    const stat = fs.statSync(absolute);
    this.used.add(key);
    const cached = this.entries.get(key);
    if (cached && cached[0] === stat.size && cached[1] === stat.mtimeMs && cached[2] === stat.ctimeMs && cached[3] === stat.ino) {
      this.hits++;
      return { hit: { digest: cached[4], size: stat.size, executable: (stat.mode & 0o100) !== 0 } };
    }
    return { miss: stat };
  }

  /** Reads and hashes a file the cache did not know, and remembers it unless it is fresh. */
  async compute(key: string, absolute: string, stat: fs.Stats): Promise<FileDigest> {
    this.misses++;
    const digest = await sha256File(absolute, stat.size);
    const cached = this.entries.get(key);
    if (this.now() - Math.max(stat.mtimeMs, stat.ctimeMs) > 2000) {
      this.entries.set(key, [stat.size, stat.mtimeMs, stat.ctimeMs, stat.ino, digest]);
      this.dirty = true;
    } else if (cached) {
      this.entries.delete(key);
      this.dirty = true;
    }
    return { digest, size: stat.size, executable: (stat.mode & 0o100) !== 0 };
  }

  /** Digest of the file at `absolute` (symlinks followed), remembered under `key`. */
  async digest(key: string, absolute: string): Promise<FileDigest> {
    const found = this.lookup(key, absolute);
    return 'hit' in found ? found.hit : this.compute(key, absolute, found.miss);
  }

  /** Digests of many files: hits answered at once, misses read a few at a time. */
  async digestAll(files: ReadonlyArray<{ key: string; absolute: string }>, concurrency = 8): Promise<FileDigest[]> {
    const results = new Array<FileDigest>(files.length);
    const misses: Array<{ index: number; stat: fs.Stats }> = [];
    files.forEach((file, index) => {
      const found = this.lookup(file.key, file.absolute);
      if ('hit' in found) results[index] = found.hit;
      else misses.push({ index, stat: found.miss });
    });
    await mapLimit(misses, concurrency, async ({ index, stat }) => {
      results[index] = await this.compute(files[index]!.key, files[index]!.absolute, stat);
    });
    return results;
  }

  /** Writes the cache if anything changed, dropping entries for files no longer asked about. */
  async save(): Promise<void> {
    for (const key of this.entries.keys()) {
      if (!this.used.has(key)) {
        this.entries.delete(key);
        this.dirty = true;
      }
    }
    if (!this.file || !this.dirty) return;
    const data: CacheFile = { version: 2, entries: Object.fromEntries(this.entries) };
    await writeFileAtomic(this.file, JSON.stringify(data));
    this.dirty = false;
  }
}
