import fs from 'node:fs/promises';
import path from 'node:path';
import { createRequire } from 'node:module';
import type dockerignoreModule from '@balena/dockerignore';
import type { ComputalotProject } from '../project/load.js';
import type { BuildSettings, ComputalotManifest } from '../project/computalot.js';
import { DEFAULT_BUILD_CONTEXT, DEFAULT_DOCKERFILE } from '../project/paths.js';
import { selectFiles, type SelectedEntry } from '../pack/select.js';
import { StatCache } from '../pack/stat-cache.js';
import { ensureStateDir, statePaths } from '../project/state.js';
import { sha256Hex } from '../util/fs.js';

// The package is CommonJS (`module.exports = factory`) but its types declare a default export.
// Required rather than imported: an import from an ES module first scans a CommonJS file for its
// export names (cjs-module-lexer), which costs more than compiling it (see pack/select.ts).
const dockerignore = createRequire(import.meta.url)('@balena/dockerignore') as typeof dockerignoreModule.default;

export const OCI_BUILD_HASH_FORMAT = 'cycle-build-hash/v1-oci';

/**
 * The Docker build context of an OCI project, as the platform sees it: the files an upload
 * ships (see pack/select.ts) under `build.context`, minus what the context's .dockerignore
 * leaves out. The Dockerfile and .dockerignore are always part of it, as Docker always sends
 * them. Paths are relative to the context.
 */
export async function ociBuildContext(root: string, build: BuildSettings): Promise<SelectedEntry[]> {
  const { entries } = await selectFiles(root);
  return contextEntries(root, entries, build);
}

async function contextEntries(root: string, selected: readonly SelectedEntry[], build: BuildSettings): Promise<SelectedEntry[]> {
  const context = path.posix.normalize(build.context);
  const prefix = context === '.' ? '' : `${context.replace(/\/+$/, '')}/`;
  const dockerfile = path.posix.relative(context, path.posix.normalize(build.dockerfile));
  const rules = await fs.readFile(path.join(root, prefix, '.dockerignore'), 'utf8').catch(() => '');
  const matcher = dockerignore({ ignorecase: false }).add(rules);
  return selected
    .filter((entry) => entry.path.startsWith(prefix) && entry.path !== prefix.slice(0, -1))
    .map((entry) => (prefix === '' ? entry : { ...entry, path: entry.path.slice(prefix.length) }))
    .filter((entry) => entry.path === dockerfile || entry.path === '.dockerignore' || !matcher.ignores(entry.path));
}

/**
 * The build settings as they enter the hash: nothing for the default build (so a manifest
 * without `build` keeps the hash it had), else one line of canonical JSON (sorted keys).
 */
function buildSettingsLine(build: BuildSettings): string | undefined {
  const dockerfile = path.posix.normalize(build.dockerfile);
  const context = path.posix.normalize(build.context);
  const args = Object.keys(build.args).sort();
  if (dockerfile === DEFAULT_DOCKERFILE && context === DEFAULT_BUILD_CONTEXT && build.target === undefined && args.length === 0) return undefined;
  const canonical = { args: Object.fromEntries(args.map((key) => [key, build.args[key]])), context, dockerfile, target: build.target ?? null };
  return `build\t${JSON.stringify(canonical)}`;
}

/**
 * The init commands as they enter the hash (they shape the prepared image): nothing when there
 * are none (so such a project keeps its hash), else one line of canonical JSON of what decides
 * what they do: each command, cwd and env (sorted keys), and the workdir a relative cwd is
 * taken from. A label only names a command: changing it prepares nothing again.
 */
function initLine(runtime: ComputalotManifest['runtime']): string | undefined {
  const commands = runtime.init?.commands ?? [];
  if (commands.length === 0) return undefined;
  const canonical = {
    commands: commands.map((c) => ({
      command: c.command,
      cwd: c.cwd ?? null,
      env: Object.fromEntries(
        Object.keys(c.env)
          .sort()
          .map((key) => [key, c.env[key]]),
      ),
    })),
    workdir: runtime.workdir,
  };
  return `init\t${JSON.stringify(canonical)}`;
}

/**
 * The build hash of an OCI project: sha256 over `cycle-build-hash/v1-oci`, the build settings
 * when they are not the default (`build<TAB>{"args":…,"context":…,"dockerfile":…,"target":…}`),
 * the init commands when there are any (`init<TAB>{"commands":[{"command":…,"cwd":…,"env":…}],"workdir":…}`)
 * and, for every file of the build context sorted by path bytes,
 * `file<TAB>755|644<TAB>sha256<TAB>"path"`, and for every symlink `link<TAB>"target"<TAB>"path"`
 * (docs/build-hash.md).
 */
export async function computalotBuildHash(project: ComputalotProject, options: { useCache?: boolean } = {}): Promise<{ hash: string; files: SelectedEntry[] }> {
  const build = project.manifest.build;
  const { entries: selected } = await selectFiles(project.root);
  const useCache = options.useCache !== false;
  const cache = await StatCache.load(useCache ? statePaths.statCache(project.root) : undefined);
  const entries = await contextEntries(project.root, selected, build);
  // Digests by project path (the stat cache's keys, shared with packing), lines by context path.
  const inContext = new Set(entries.map((entry) => entry.absolute));
  const regular = selected.filter((entry) => entry.type === 'file' && inContext.has(entry.absolute));
  const digests = await cache.digestAll(regular);
  const byAbsolute = new Map(regular.map((entry, index) => [entry.absolute, digests[index]!]));
  const lines = entries.map((entry) => {
    if (entry.type === 'symlink') return `link\t${JSON.stringify(entry.linkTarget ?? '')}\t${JSON.stringify(entry.path)}`;
    const digest = byAbsolute.get(entry.absolute);
    return digest ? `file\t${digest.executable ? '755' : '644'}\t${digest.digest}\t${JSON.stringify(entry.path)}` : undefined;
  });
  if (useCache) {
    await ensureStateDir(project.root)
      .then(() => cache.save())
      .catch(() => undefined);
  }
  const settings = [buildSettingsLine(build), initLine(project.manifest.runtime)].filter((line): line is string => line !== undefined);
  const text = [OCI_BUILD_HASH_FORMAT, ...settings, ...lines.filter((l): l is string => l !== undefined)].join('\n') + '\n';
  return { hash: sha256Hex(text), files: entries.filter((e) => e.type === 'file') };
}
