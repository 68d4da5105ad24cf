import { createHash } from 'node:crypto';
import path from 'node:path';
import { BUILD_SCRIPT_PATH } from '../project/paths.js';
import type { CycleswapProject } from '../project/load.js';
import { StatCache } from '../pack/stat-cache.js';
import { ensureStateDir, statePaths } from '../project/state.js';

/** Bump when the encoding below changes: every project then rebuilds once. */
export const BUILD_HASH_FORMAT = 'cycle-build-hash/v1';

export interface BuildHashFile {
  path: string;
  executable: boolean;
  size: number;
  sha256: string;
}

/** Everything the build hash covers; see docs/build-hash.md. */
export interface BuildInputs {
  format: string;
  image: string;
  buildScript: { sha256: string; size: number };
  files: BuildHashFile[];
}

/**
 * The canonical encoding, byte for byte (docs/build-hash.md): UTF-8 lines ending in LF,
 *   cycle-build-hash/v1
 *   image <TAB> ubuntu:24.04
 *   build.sh <TAB> <sha256 of build.sh bytes>
 *   file <TAB> <755|644> <TAB> <sha256 of bytes> <TAB> <JSON-quoted POSIX path>   (sorted by path bytes)
 */
export function encodeBuildInputs(inputs: BuildInputs): string {
  const parts: string[] = [];
  writeBuildInputs(inputs, linesOf(inputs.files), (chunk) => parts.push(chunk));
  return parts.join('');
}

/** A character JSON.stringify writes as an escape: quote, backslash, controls, surrogates (lone ones are escaped). */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * JSON.stringify of a string, the same bytes: a path with nothing to escape (nearly every one)
 * is quoted as it is, without JSON.stringify's call per file line.
 */
export function jsonQuote(text: string): string {
  return NEEDS_ESCAPE.test(text) ? JSON.stringify(text) : `"${text}"`;
}

/** Lines per chunk handed to `write`: big enough that a hash update per chunk costs nothing. */
const LINES_PER_CHUNK = 256;

/** The file lines of the encoding, by position: read from an array of objects or straight from a stat table. */
interface FileLines {
  count: number;
  executable(index: number): boolean;
  sha256(index: number): string;
  path(index: number): string;
}

function linesOf(files: readonly BuildHashFile[]): FileLines {
  return {
    count: files.length,
    executable: (index) => files[index]!.executable,
    sha256: (index) => files[index]!.sha256,
    path: (index) => files[index]!.path,
  };
}

/** The encoding's first three lines. */
function headerLines(header: Omit<BuildInputs, 'files'>): string {
  return `${header.format}\nimage\t${header.image}\nbuild.sh\t${header.buildScript.sha256}\n`;
}

/**
 * The encoding above, in chunks of a few hundred lines: the hash takes it without one string
 * of the whole tree (20,000 lines built with `+=` made a rope the hash then flattened).
 */
function writeBuildInputs(header: Omit<BuildInputs, 'files'>, files: FileLines, write: (chunk: string) => void): void {
  write(headerLines(header));
  for (let start = 0; start < files.count; start += LINES_PER_CHUNK) {
    let chunk = '';
    const end = Math.min(files.count, start + LINES_PER_CHUNK);
    for (let i = start; i < end; i++) chunk += `file\t${files.executable(i) ? '755' : '644'}\t${files.sha256(i)}\t${jsonQuote(files.path(i))}\n`;
    write(chunk);
  }
}

export function buildHash(inputs: BuildInputs): string {
  return hashLines(inputs, linesOf(inputs.files));
}

function hashLines(header: Omit<BuildInputs, 'files'>, files: FileLines): string {
  const hash = createHash('sha256');
  writeBuildInputs(header, files, (chunk) => hash.update(chunk, 'utf8'));
  return hash.digest('hex');
}

export interface CollectOptions {
  /** Use and update the project's stat cache (default true). */
  useCache?: boolean;
  now?: () => number;
}

export interface CollectedBuildInputs {
  inputs: BuildInputs;
  hash: string;
  cache: { hits: number; misses: number };
}

/** Reads build.sh and the build files (through the stat cache) and computes the hash. */
export async function collectBuildInputs(project: CycleswapProject, options: CollectOptions = {}): Promise<CollectedBuildInputs> {
  const cacheFile = options.useCache === false ? undefined : statePaths.statCache(project.root);
  const cache = await StatCache.load(cacheFile, options.now);
  const [script] = await cache.digestAll([{ path: BUILD_SCRIPT_PATH, absolute: path.join(project.root, BUILD_SCRIPT_PATH) }]);
  const table = await cache.digestTable(project.buildFiles);
  const buildFiles = project.buildFiles;
  const header = { format: BUILD_HASH_FORMAT, image: project.manifest.image.ref, buildScript: { sha256: script!.digest, size: script!.size } };
  // The stat cache keeps the hash beside its entries (the memo: the header lines, then the
  // hash): when every file is exactly its entry (same paths in the same order, same stats, so
  // the same digests and exec bits) and the header is the same, the encoding is byte for byte
  // the one hashed then, and its hash is not computed again.
  const lines = headerLines(header);
  const memo = cache.memo;
  const remembered = cache.unchanged && memo.length === lines.length + 64 && memo.startsWith(lines) ? memo.slice(lines.length) : undefined;
  // Otherwise the hash is read straight from the stat table; the file objects are made only
  // when asked for (--json, --explain, a build's record): an unchanged run makes none.
  const hash =
    remembered ??
    hashLines(header, {
      count: buildFiles.length,
      executable: (i) => table.executable(i),
      sha256: (i) => table.digest(i),
      path: (i) => buildFiles[i]!.path,
    });
  let files: BuildHashFile[] | undefined;
  const inputs: BuildInputs = {
    ...header,
    get files(): BuildHashFile[] {
      files ??= buildFiles.map((file, index) => ({
        path: file.path,
        executable: table.executable(index),
        size: table.size(index),
        sha256: table.digest(index),
      }));
      return files;
    },
  };
  if (cacheFile) {
    // A read-only checkout still gets its hash, just without a cache.
    await ensureStateDir(project.root)
      .then(() => cache.save(lines + hash))
      .catch(() => undefined);
  }
  return { inputs, hash, cache: { hits: cache.hits, misses: cache.misses } };
}

export type InputChange =
  | { kind: 'image'; before: string; after: string }
  | { kind: 'build.sh'; before: string; after: string }
  | { kind: 'format'; before: string; after: string }
  | { kind: 'added' | 'removed' | 'modified' | 'mode'; path: string; detail?: string };

/** What changed between the inputs of the last build and now. */
export function explainChanges(before: BuildInputs, after: BuildInputs): InputChange[] {
  const changes: InputChange[] = [];
  if (before.format !== after.format) changes.push({ kind: 'format', before: before.format, after: after.format });
  if (before.image !== after.image) changes.push({ kind: 'image', before: before.image, after: after.image });
  if (before.buildScript.sha256 !== after.buildScript.sha256)
    changes.push({ kind: 'build.sh', before: before.buildScript.sha256, after: after.buildScript.sha256 });
  const old = new Map(before.files.map((f) => [f.path, f]));
  const now = new Map(after.files.map((f) => [f.path, f]));
  for (const [file, current] of now) {
    const previous = old.get(file);
    if (!previous) changes.push({ kind: 'added', path: file });
    else if (previous.sha256 !== current.sha256) changes.push({ kind: 'modified', path: file, detail: `${previous.size} → ${current.size} bytes` });
    else if (previous.executable !== current.executable)
      changes.push({ kind: 'mode', path: file, detail: current.executable ? 'became executable' : 'no longer executable' });
  }
  for (const file of old.keys()) if (!now.has(file)) changes.push({ kind: 'removed', path: file });
  return changes;
}
