import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * The local state folder of a project: caches, the last build record, run folders and
 * default volume folders. It ignores itself for git (a `.gitignore` of `*`) and is never packed.
 */
export const STATE_DIR_NAME = '.cycle';

export function stateDir(root: string): string {
  return path.join(root, STATE_DIR_NAME);
}

export async function ensureStateDir(root: string): Promise<string> {
  const dir = stateDir(root);
  await fs.mkdir(dir, { recursive: true });
  const ignore = path.join(dir, '.gitignore');
  await fs.writeFile(ignore, '# cycle local state (caches, runs, volumes); safe to delete\n*\n', { flag: 'wx' }).catch(() => undefined);
  return dir;
}

export const statePaths = {
  statCache: (root: string) => path.join(stateDir(root), 'stat-cache.bin'),
  lastBuild: (root: string) => path.join(stateDir(root), 'last-build.json'),
  runs: (root: string) => path.join(stateDir(root), 'runs'),
  volumes: (root: string) => path.join(stateDir(root), 'volumes'),
  config: (root: string) => path.join(stateDir(root), 'config.toml'),
};
