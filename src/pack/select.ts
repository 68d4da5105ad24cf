import fs from 'node:fs/promises';
import { type Dirent, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { isInside } from '../util/paths.js';
import path from 'node:path';
import { createRequire } from 'node:module';
import type { Ignore } from 'ignore';
import { CycleError, ExitCode, errnoCode } from '../errors.js';
import { STATE_DIR_NAME } from '../project/state.js';
import { sortByBytes } from '../project/build-files.js';
import type { TarEntry } from './tar.js';
import type { TreeLimits } from '../server/limits.js';
import { DEFAULT_SLICE_MS, pacer, WALK_STEPS_PER_CLOCK_READ } from '../util/pace.js';

/**
 * `ignore` is CommonJS. Imported from an ES module, Node first scans its 50 KB of source for the
 * names it exports (cjs-module-lexer): ~180 M instructions, ~30 ms of CPU on every command that
 * packs a tree (`project test` included). Required, it is only compiled (~12 M).
 */
const ignore = createRequire(import.meta.url)('ignore') as typeof import('ignore');

export interface SelectedEntry {
  /** POSIX path relative to the project root. */
  path: string;
  absolute: string;
  type: 'file' | 'directory' | 'symlink';
  size: number;
  executable: boolean;
  linkTarget?: string;
}

export interface Selection {
  root: string;
  /** Sorted by path bytes; directories included so empty ones survive. */
  entries: SelectedEntry[];
  /** Secret-looking files left out; each named in a warning. */
  excludedSecrets: string[];
  fileCount: number;
  totalBytes: number;
}

/** Never packed: git's own folder and cycle's local state. */
export const ALWAYS_EXCLUDED = ['.git', STATE_DIR_NAME];

/** Files that usually hold credentials: left out unless a .cycleignore `!pattern` names them. */
export const SECRET_PATTERNS = [
  '.env',
  '.env.*',
  '*.pem',
  '*.p12',
  '*.pfx',
  'id_rsa*',
  'id_dsa*',
  'id_ecdsa*',
  'id_ed25519*',
  '.netrc',
  '_netrc',
  '.git-credentials',
  '.pypirc',
  '.npmrc',
  '.aws/credentials',
  '.azure/',
  '.config/gcloud/',
  'application_default_credentials.json',
  'client_secret*.json',
  'service-account*.json',
  '.docker/config.json',
  '.kube/config',
];
/** Templates of secret files are meant to be shared. */
export const SECRET_ALLOWED = ['.env.example', '.env.sample', '.env.template', '.env.dist'];

const secretMatcher = ignore().add(SECRET_PATTERNS);

interface Level {
  /** POSIX dir relative to root ('' for the root) */
  base: string;
  git?: Ignore;
  cycle?: Ignore;
}

export interface SelectOptions {
  /** Patterns (gitignore syntax, relative to the root) to leave out as well. */
  extraExcludes?: string[];
  /**
   * false: take every file (the server's copy of a pushed tarball, already selected by the
   * client); only .git/ and .cycle/ stay out.
   */
  rules?: boolean;
  /**
   * The tree is a user's upload (the server's copy of a push): refused, before going deeper, at
   * the first folder, name or symlink past these limits, which bound what each step costs.
   */
  limits?: TreeLimits;
}

/**
 * Which files a project ships: what .gitignore files (nested too), .git/info/exclude and
 * .cycleignore files leave in, minus .git/, .cycle/ and secret-looking files.
 * Agrees with `git check-ignore` on every path (tested).
 */
export async function selectFiles(root: string, options: SelectOptions = {}): Promise<Selection> {
  const walk = await startWalk(root, options);
  const entries: SelectedEntry[] = [];
  for (const step of walk.steps(false)) {
    if (step instanceof Promise) await step;
    else entries.push(step);
  }
  sortByBytes(entries, (entry) => entry.path);
  return selectionOf(root, entries, walk.excludedSecrets);
}

/**
 * The selection as a stream, in the order `selectFiles` sorts it (by path bytes), each entry as
 * soon as its folder is read: packing starts on the first files while the walk goes on (the
 * walk of 5,000 files was ~10% of a pack, with the thread pool idle). `done()` gives the
 * whole selection once the stream has ended.
 */
export async function streamSelection(root: string, options: SelectOptions = {}): Promise<{ entries: AsyncGenerator<SelectedEntry>; done: () => Selection }> {
  const walk = await startWalk(root, options);
  const entries: SelectedEntry[] = [];
  let ended = false;
  async function* stream(): AsyncGenerator<SelectedEntry> {
    for (const step of walk.steps(true)) {
      if (step instanceof Promise) await step;
      else {
        entries.push(step);
        yield step;
      }
    }
    ended = true;
  }
  return {
    entries: stream(),
    done: () => {
      if (!ended) throw new Error('streamSelection: the selection is asked for before its stream ended');
      return selectionOf(root, entries, walk.excludedSecrets);
    },
  };
}

function selectionOf(root: string, entries: SelectedEntry[], excludedSecrets: string[]): Selection {
  sortByBytes(excludedSecrets, (secret) => secret);
  const files = entries.filter((e) => e.type === 'file');
  return { root, entries, excludedSecrets, fileCount: files.length, totalBytes: files.reduce((sum, e) => sum + e.size, 0) };
}

/** One walk of a tree: its entries (or a pace's wait to await), and the secrets it left out. */
async function startWalk(
  root: string,
  options: SelectOptions,
): Promise<{ steps: (sorted: boolean) => Generator<SelectedEntry | Promise<void>>; excludedSecrets: string[] }> {
  const realRoot = await fs.realpath(root);
  const excludedSecrets: string[] = [];
  const rootLevel: Level = { base: '' };
  const extra = options.extraExcludes?.length ? ignore().add(options.extraExcludes) : undefined;
  const infoExclude = readIgnoreFile(path.join(root, '.git', 'info', 'exclude'));
  const rootGit = readIgnoreFile(path.join(root, '.gitignore'));
  if (infoExclude || rootGit)
    rootLevel.git = ignore()
      .add(infoExclude ?? '')
      .add(rootGit ?? '');
  const rootCycle = readIgnoreFile(path.join(root, '.cycleignore'));
  if (rootCycle) rootLevel.cycle = ignore().add(rootCycle);

  const rules = options.rules !== false;
  const limits = options.limits;
  let symlinks = 0;
  // Sync calls on purpose: 20,000 awaited stats took seconds where sync ones take a tenth. The
  // pace yields to the event loop every few milliseconds, so the server stays responsive: the
  // walk is a synchronous generator that hands its caller the pace's wait to await.
  const pace = pacer(DEFAULT_SLICE_MS, WALK_STEPS_PER_CLOCK_READ);
  // path.join(root, rel) for a rel made of listed names, without normalizing per file.
  const prefix = path.join(root, '/');
  /** A listed name: left out (undefined), or its entry, with the rules for its folder's children. */
  const take = (dirent: Dirent, relativeDir: string, depth: number, levels: Level[]): { entry: SelectedEntry; levels?: Level[] } | undefined => {
    const rel = relativeDir === '' ? dirent.name : `${relativeDir}/${dirent.name}`;
    if (limits) checkTreeLimits(limits, rel, dirent.isDirectory() ? depth + 1 : depth, dirent.isSymbolicLink() ? ++symlinks : 0);
    if (relativeDir === '' && ALWAYS_EXCLUDED.includes(dirent.name)) return undefined;
    const isDir = dirent.isDirectory();
    const testPath = isDir ? `${rel}/` : rel;
    if (rules && decide(testPath, levels, 'both') === 'ignored') return undefined;
    if (extra?.ignores(testPath)) return undefined;
    const absolute = prefix + rel;
    if (rules && isSecret(testPath) && decide(testPath, levels, 'cycle') !== 'unignored') {
      excludedSecrets.push(rel);
      return undefined;
    }
    if (dirent.isSymbolicLink()) {
      const target = readlinkSync(absolute);
      assertLinkInside(realRoot, root, rel, absolute, target);
      return { entry: { path: rel, absolute, type: 'symlink', size: 0, executable: false, linkTarget: target } };
    }
    if (isDir) {
      const childLevels = [...levels];
      const git = readIgnoreFile(path.join(absolute, '.gitignore'));
      const cycle = readIgnoreFile(path.join(absolute, '.cycleignore'));
      if (git || cycle) childLevels.push({ base: rel, ...(git ? { git: ignore().add(git) } : {}), ...(cycle ? { cycle: ignore().add(cycle) } : {}) });
      return { entry: { path: rel, absolute, type: 'directory', size: 0, executable: true }, levels: childLevels };
    }
    if (dirent.isFile()) {
      const stat = statSync(absolute);
      return { entry: { path: rel, absolute, type: 'file', size: stat.size, executable: (stat.mode & 0o100) !== 0 } };
    }
    return undefined; // sockets, fifos and devices are not project files: skipped
  };
  /**
   * The entries under `relativeDir`. Unsorted: each folder's subtree right after the folder (the
   * caller sorts). Sorted: by path bytes as the caller would sort them, each folder's subtree at
   * the place of its name plus "/" among its siblings ("a", "a-b", "a.txt", "a/x", "a0").
   */
  function* walk(relativeDir: string, depth: number, levels: Level[], sorted: boolean): Generator<SelectedEntry | Promise<void>> {
    const absoluteDir = relativeDir === '' ? root : path.join(root, relativeDir);
    const dirents = readdirSync(absoluteDir, { withFileTypes: true });
    const taken: Array<{ key: string; entry: SelectedEntry; levels?: Level[]; subtree?: boolean }> = [];
    for (const dirent of dirents) {
      const wait = pace();
      if (wait) yield wait;
      const found = take(dirent, relativeDir, depth, levels);
      if (!found) continue;
      if (!sorted) {
        yield found.entry;
        if (found.levels) yield* walk(found.entry.path, depth + 1, found.levels, false);
        continue;
      }
      taken.push({ key: dirent.name, entry: found.entry });
      if (found.levels) taken.push({ key: `${dirent.name}/`, entry: found.entry, levels: found.levels, subtree: true });
    }
    if (!sorted) return;
    sortByBytes(taken, (item) => item.key);
    for (const item of taken) {
      if (item.subtree) yield* walk(item.entry.path, depth + 1, item.levels!, true);
      else yield item.entry;
    }
  }
  return { steps: (sorted) => walk('', 0, [rootLevel], sorted), excludedSecrets };
}

/** Checked on each entry of an uploaded tree before it is looked at (what a lookup costs grows with these). */
function checkTreeLimits(limits: TreeLimits, rel: string, depth: number, symlinks: number): void {
  const refuse = (what: string): never => {
    throw new CycleError({
      message: `${rel.length > 120 ? `${rel.slice(0, 120)}…` : rel}: ${what}`,
      hint: 'push the project again from a tree within the server\'s limits (docs/api.md, "Projects")',
      exitCode: ExitCode.invalidProject,
    });
  };
  if (depth > limits.maxDepth) refuse(`${depth} folders deep; at most ${limits.maxDepth} are allowed`);
  if (Buffer.byteLength(rel) > limits.maxPathBytes) refuse(`the name is over ${limits.maxPathBytes} bytes`);
  if (symlinks > limits.maxSymlinks) refuse(`more than ${limits.maxSymlinks} symlinks`);
}

/** Last matching rule wins, deeper ignore files over shallower, .cycleignore over .gitignore. */
function decide(testPath: string, levels: Level[], which: 'both' | 'cycle'): 'ignored' | 'unignored' | undefined {
  let outcome: 'ignored' | 'unignored' | undefined;
  for (const level of levels) {
    const local = level.base === '' ? testPath : testPath.slice(level.base.length + 1);
    for (const matcher of which === 'both' ? [level.git, level.cycle] : [level.cycle]) {
      if (!matcher) continue;
      const result = matcher.test(local);
      if (result.ignored) outcome = 'ignored';
      else if (result.unignored) outcome = 'unignored';
    }
  }
  return outcome;
}

/**
 * A path the secret patterns can match has a component (the matcher checks each parent folder
 * too) that starts with one of their literal beginnings or ends with one of their extensions;
 * `ignore` matches case-insensitively, so this does too. Most paths fail this test, and then the
 * matcher is not asked: its ~20 rules per path and per parent folder were a third of the time
 * the selection of a 5,000-file tree took. The dot-names are listed (not any name starting with
 * a dot): `.cycleswap/run.sh`, in every project, otherwise made the matcher compile its rules,
 * ~3 ms of an unchanged `project test`.
 */
const MAY_BE_SECRET =
  /(?:^|\/)(?:\.(?:env|netrc|git-credentials|pypirc|npmrc|aws|azure|config|docker|kube)|id_|_netrc|application_default_credentials|client_secret|service-account)|\.(?:pem|p12|pfx)(?:\/|$)/i;

export function isSecret(testPath: string): boolean {
  if (!MAY_BE_SECRET.test(testPath)) return false;
  const name = path.posix.basename(testPath.replace(/\/$/, ''));
  if (SECRET_ALLOWED.includes(name)) return false;
  return secretMatcher.ignores(testPath);
}

function readIgnoreFile(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR' || errnoCode(error) === 'EISDIR') return undefined;
    throw error;
  }
}

function assertLinkInside(realRoot: string, root: string, rel: string, absolute: string, target: string): void {
  const lexical = path.resolve(path.dirname(absolute), target);
  let real: string | undefined;
  try {
    real = realpathSync(absolute);
  } catch {
    real = undefined; // a broken link: judged by where it points
  }
  const ok = real !== undefined ? isInside(realRoot, real) : isInside(root, lexical);
  if (!ok) {
    throw new CycleError({
      message: `${rel} is a symlink to ${target}, outside the project`,
      hint: `replace the link with a copy of what it points to, or leave it out with a line "${rel}" in .cycleignore`,
      exitCode: ExitCode.invalidProject,
    });
  }
}

/** Selected entries as tar entries that read from disk. */
export function toTarEntries(entries: readonly SelectedEntry[]): TarEntry[] {
  return entries.map(toTarEntry);
}

/** A selected entry as a tar entry that reads from disk. */
export function toTarEntry(entry: SelectedEntry): TarEntry {
  return {
    path: entry.path,
    type: entry.type,
    size: entry.size,
    executable: entry.executable,
    ...(entry.linkTarget !== undefined ? { linkTarget: entry.linkTarget } : {}),
    source: entry.absolute,
  };
}
