import fs from 'node:fs/promises';
import path from 'node:path';
import dockerignoreModule from '@balena/dockerignore';
import type { ComputalotProject } from '../project/load.js';
import { selectFiles, type SelectedEntry } from '../pack/select.js';
import { StatCache } from '../pack/stat-cache.js';
import { ensureStateDir, statePaths } from '../project/state.js';
import { sha256Hex } from '../util/fs.js';

// The package is CommonJS (`module.exports = factory`) but its types declare a default export.
const dockerignore = dockerignoreModule as unknown as typeof dockerignoreModule.default;

export const OCI_BUILD_HASH_FORMAT = 'cycle-build-hash/v1-oci';

/**
 * The Docker build context of an OCI project, as the platform sees it: the files an upload
 * ships (see pack/select.ts), minus what .dockerignore leaves out. Dockerfile and .dockerignore
 * are always part of it, as Docker always sends them.
 */
export async function ociBuildContext(root: string): Promise<SelectedEntry[]> {
  const selection = await selectFiles(root);
  const rules = await fs.readFile(path.join(root, '.dockerignore'), 'utf8').catch(() => '');
  const matcher = dockerignore({ ignorecase: false }).add(rules);
  return selection.entries.filter((entry) => entry.path === 'Dockerfile' || entry.path === '.dockerignore' || !matcher.ignores(entry.path));
}

/**
 * The build hash of an OCI project: sha256 over `cycle-build-hash/v1-oci` and, for every file
 * of the build context sorted by path bytes, `file<TAB>755|644<TAB>sha256<TAB>"path"`, and
 * for every symlink `link<TAB>"target"<TAB>"path"` (docs/build-hash.md).
 */
export async function computalotBuildHash(project: ComputalotProject, options: { useCache?: boolean } = {}): Promise<{ hash: string; files: SelectedEntry[] }> {
  const entries = await ociBuildContext(project.root);
  const useCache = options.useCache !== false;
  const cache = await StatCache.load(useCache ? statePaths.statCache(project.root) : undefined);
  const regular = entries.filter((entry) => entry.type === 'file');
  const digests = await cache.digestAll(regular);
  const byPath = new Map(regular.map((entry, index) => [entry.path, digests[index]!]));
  const lines = entries.map((entry) => {
    if (entry.type === 'symlink') return `link\t${JSON.stringify(entry.linkTarget ?? '')}\t${JSON.stringify(entry.path)}`;
    const digest = byPath.get(entry.path);
    return digest ? `file\t${digest.executable ? '755' : '644'}\t${digest.digest}\t${JSON.stringify(entry.path)}` : undefined;
  });
  if (useCache) {
    await ensureStateDir(project.root)
      .then(() => cache.save())
      .catch(() => undefined);
  }
  const text = [OCI_BUILD_HASH_FORMAT, ...lines.filter((l): l is string => l !== undefined)].join('\n') + '\n';
  return { hash: sha256Hex(text), files: entries.filter((e) => e.type === 'file') };
}
