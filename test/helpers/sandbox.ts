import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * What a folder holds, read without following links: `file:<content>`, `link:<target>` or
 * `dir` by relative path. Two snapshots are equal when nothing under the folder was created,
 * removed, written or relinked in between.
 */
export async function snapshotTree(root: string, skip: ReadonlySet<string> = new Set()): Promise<Record<string, string>> {
  const found: Record<string, string> = {};
  const walk = async (relative: string): Promise<void> => {
    for (const name of (await fs.readdir(path.join(root, relative))).sort()) {
      const child = relative === '' ? name : `${relative}/${name}`;
      if (skip.has(child)) continue;
      const absolute = path.join(root, child);
      const stat = await fs.lstat(absolute);
      if (stat.isSymbolicLink()) found[child] = `link:${await fs.readlink(absolute)}`;
      else if (stat.isDirectory()) {
        found[child] = 'dir';
        await walk(child);
      } else found[child] = `file:${(await fs.readFile(absolute)).toString('base64')}`;
    }
  };
  await walk('');
  return found;
}

/** Rejects when `promise` has not settled within `ms`: for code that must never hang. */
export async function settlesWithin<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
