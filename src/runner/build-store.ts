import type { BuildInputs } from '../build-hash/hash.js';
import { readJsonFile, writeFileAtomic } from '../util/fs.js';
import { ensureStateDir, statePaths } from '../project/state.js';

/** The last image built for a project: what "the previous build image" means. */
export interface BuildRecord {
  hash: string;
  /** What the hash covered (.cycleswap/ projects), for `project hash --explain`. */
  inputs?: BuildInputs;
  image: { id: string; tag: string };
  base: string;
  builtAt: string;
}

/** Where build records live: `.cycle/last-build.json` locally, the database on the server. */
export interface BuildStore {
  last(): Promise<BuildRecord | undefined>;
  save(record: BuildRecord): Promise<void>;
}

export function localBuildStore(root: string): BuildStore {
  return {
    last: () => readJsonFile<BuildRecord>(statePaths.lastBuild(root)),
    save: async (record) => {
      await ensureStateDir(root);
      await writeFileAtomic(statePaths.lastBuild(root), JSON.stringify(record, null, 2) + '\n');
    },
  };
}
