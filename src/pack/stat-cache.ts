import fs from 'node:fs';
import { readJsonFile, sha256File, writeFileAtomic } from '../util/fs.js';

/** [size, mtime ns, ctime ns, inode, sha256] */
type Entry = [number, string, string, string, string];

interface CacheFile {
  version: 1;
  entries: Record<string, Entry>;
}

export interface FileDigest {
  digest: string;
  size: number;
  executable: boolean;
}

/**
 * Remembers file digests by (size, mtime, ctime, inode), so an unchanged tree is hashed
 * with stats alone. A file changed within the last two seconds is not remembered: on a
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
    const entries = new Map<string, Entry>(data?.version === 1 ? Object.entries(data.entries) : []);
    return new StatCache(file, entries, now);
  }

  /** Digest of the file at `absolute` (symlinks followed), remembered under `key`. */
  async digest(key: string, absolute: string): Promise<FileDigest> {
    const stat = fs.statSync(absolute, { bigint: true });
    const size = Number(stat.size);
    const executable = (Number(stat.mode) & 0o100) !== 0;
    const mtime = stat.mtimeNs.toString();
    const ctime = stat.ctimeNs.toString();
    const ino = stat.ino.toString();
    this.used.add(key);
    const cached = this.entries.get(key);
    if (cached && cached[0] === size && cached[1] === mtime && cached[2] === ctime && cached[3] === ino) {
      this.hits++;
      return { digest: cached[4], size, executable };
    }
    this.misses++;
    const digest = await sha256File(absolute, size);
    const freshMs = Number(stat.mtimeNs > stat.ctimeNs ? stat.mtimeNs : stat.ctimeNs) / 1e6;
    if (this.now() - freshMs > 2000) {
      this.entries.set(key, [size, mtime, ctime, ino, digest]);
      this.dirty = true;
    } else if (cached) {
      this.entries.delete(key);
      this.dirty = true;
    }
    return { digest, size, executable };
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
    const data: CacheFile = { version: 1, entries: Object.fromEntries(this.entries) };
    await writeFileAtomic(this.file, JSON.stringify(data));
    this.dirty = false;
  }
}
