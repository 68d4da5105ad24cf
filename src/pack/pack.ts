import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipDeterministic } from './gzip.js';
import { streamSelection, toTarEntries, toTarEntry, type SelectedEntry, type Selection } from './select.js';
import { ChunkPool, tarStream, type TarEntry } from './tar.js';
import { collectGarbage, limitYoungGeneration } from '../util/gc.js';

export interface PackResult {
  /** sha256 of the .tar.gz bytes: the content hash. */
  contentHash: string;
  /** Bytes of the .tar.gz. */
  size: number;
  file: string;
  selection: Selection;
}

/**
 * Compressed bytes between garbage collections while packing (see util/gc.ts). Each deflated
 * segment leaves its output buffer to the collector, so this is about the garbage held at any
 * time: at 24 MB a 1 GiB upload peaked at 143-153 MiB of RSS, at 8 MB ~110-117 (budget 128).
 */
const COLLECT_EVERY = 8 << 20;

/** Uploads over this size get a warning: usually data or a virtualenv that should be ignored. */
export const LARGE_PACK_BYTES = 256 * 1024 * 1024;

/**
 * Packs the project into a deterministic .tar.gz (same tree → same bytes), streaming: the
 * tarball is written to `out` (or a temp file) and hashed on the way, never held in memory.
 */
export async function packProject(root: string, options: { out?: string; selection?: Selection } = {}): Promise<PackResult> {
  limitYoungGeneration();
  // Without a selection given, the walk streams into the tar: the first files are compressing
  // while the rest of the tree is walked (see streamSelection).
  const streamed = options.selection ? undefined : await streamSelection(root);
  const file = options.out ?? path.join(os.tmpdir(), `cycle-pack-${randomBytes(6).toString('hex')}.tar.gz`);
  const temp = `${file}.${randomBytes(4).toString('hex')}.partial`;
  const hash = createHash('sha256');
  let size = 0;
  let sinceCollection = 0;
  const meter = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      sinceCollection += chunk.length;
      if (sinceCollection >= COLLECT_EVERY) {
        sinceCollection = 0;
        collectGarbage();
      }
      callback(null, chunk);
    },
  });
  try {
    const pool = new ChunkPool();
    const entries = streamed ? tarEntriesOf(streamed.entries) : toTarEntries(options.selection!.entries);
    await pipeline(gzipDeterministic(tarStream(entries, { pool }), 6, pool), meter, createWriteStream(temp));
    await fs.rename(temp, file);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
  return { contentHash: hash.digest('hex'), size, file, selection: streamed ? streamed.done() : options.selection! };
}

async function* tarEntriesOf(entries: AsyncIterable<SelectedEntry>): AsyncGenerator<TarEntry> {
  for await (const entry of entries) yield toTarEntry(entry);
}

export function largestFiles(selection: Selection, count = 10): Array<{ path: string; size: number }> {
  return selection.entries
    .filter((e) => e.type === 'file')
    .sort((a, b) => b.size - a.size || (a.path < b.path ? -1 : 1))
    .slice(0, count)
    .map((e) => ({ path: e.path, size: e.size }));
}
