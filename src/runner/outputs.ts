import fs from 'node:fs/promises';
import path from 'node:path';
import type { ArtifactOrder } from '../project/cycleswap.js';

export interface OutputFile {
  /** POSIX path relative to the outputs folder. */
  path: string;
  absolute: string;
  size: number;
  /** Modification time in nanoseconds: the order files were written. */
  mtimeNs: bigint;
}

/**
 * The files a job left in its outputs folder, in upload order: FIFO = the order they were
 * written (oldest first), LIFO = newest first. Ties (same nanosecond) go by path.
 */
export async function listOutputs(dir: string, order: ArtifactOrder): Promise<OutputFile[]> {
  const files: OutputFile[] = [];
  const walk = async (relative: string): Promise<void> => {
    const entries = await fs.readdir(path.join(dir, relative), { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const rel = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(rel);
      else if (entry.isFile()) {
        const absolute = path.join(dir, rel);
        const stat = await fs.stat(absolute, { bigint: true });
        files.push({ path: rel, absolute, size: Number(stat.size), mtimeNs: stat.mtimeNs });
      }
    }
  };
  await walk('');
  files.sort((a, b) => (a.mtimeNs === b.mtimeNs ? (a.path < b.path ? -1 : a.path > b.path ? 1 : 0) : a.mtimeNs < b.mtimeNs ? -1 : 1));
  if (order === 'LIFO') files.reverse();
  return files;
}
