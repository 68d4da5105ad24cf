import fs from 'node:fs/promises';
import { isInside } from '../util/paths.js';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { errnoCode } from '../errors.js';
import { suggest } from '../util/suggest.js';
import { DEFAULT_SLICE_MS, pacer, WALK_STEPS_PER_CLOCK_READ } from '../util/pace.js';

/** The server walks pushed trees here too: yield to its event loop every few milliseconds. */
const pace = pacer(DEFAULT_SLICE_MS, WALK_STEPS_PER_CLOCK_READ);

export interface BuildFile {
  /** POSIX path relative to the project root, as written in hashes and the build context. */
  readonly path: string;
  readonly absolute: string;
}

/**
 * A listed file: its absolute path is made when asked for (a stat, a read), not kept. A walk of
 * 20,000 files otherwise keeps 20,000 more strings alive, and a warm `project hash` spent more
 * time copying them in young-generation collections than walking.
 */
class ListedFile implements BuildFile {
  constructor(
    readonly path: string,
    /** The root with one trailing slash (path.join(root, '/')), shared by every file. */
    private readonly prefix: string,
  ) {}
  get absolute(): string {
    return this.prefix + this.path;
  }
}

export interface BuildFileProblem {
  /** Index in [main].build_files */
  index: number;
  message: string;
  hint?: string;
}

export interface BuildFileListing {
  files: BuildFile[];
  problems: BuildFileProblem[];
}

/**
 * Expands `build_files` (files, or folders taken whole) into a sorted list of files, and finds
 * every entry that is missing, absolute, or escapes the root through `..` or a symlink.
 */
export async function listBuildFiles(root: string, entries: readonly string[]): Promise<BuildFileListing> {
  const realRoot = await fs.realpath(root);
  // path.join(root, p) for a normalized relative p, without a join per file.
  const prefix = path.join(root, '/');
  // Paths in an array, sorted and deduplicated at the end: a Map of 20,000 paths cost more than
  // the walk's readdirs, and sorting plain strings (the engine's own comparison) than objects.
  const files: string[] = [];
  const problems: BuildFileProblem[] = [];

  for (const [index, entry] of entries.entries()) {
    if (entry.includes('\0')) {
      problems.push({ index, message: 'contains a NUL character' });
      continue;
    }
    if (path.posix.isAbsolute(entry) || path.win32.isAbsolute(entry)) {
      problems.push({
        index,
        message: `${JSON.stringify(entry)} is an absolute path; build files must be relative to the project root`,
        hint: `copy the file into the project and list it relative to the root`,
      });
      continue;
    }
    const normalized = path.posix.normalize(entry.replace(/\\/g, '/'));
    if (normalized === '..' || normalized.startsWith('../')) {
      problems.push({
        index,
        message: `${JSON.stringify(entry)} points outside the project root`,
        hint: 'build files must live inside the project; move the file in or remove the entry',
      });
      continue;
    }
    const absolute = path.join(root, normalized);
    let stat;
    try {
      stat = await fs.lstat(absolute);
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT' && errnoCode(error) !== 'ENOTDIR') throw error;
      const parent = path.dirname(absolute);
      const siblings = await fs.readdir(parent).catch(() => [] as string[]);
      const hit = suggest(path.basename(normalized), siblings);
      const parentRel = path.posix.dirname(normalized);
      problems.push({
        index,
        message: `${JSON.stringify(entry)} does not exist`,
        hint: hit !== undefined ? `did you mean ${JSON.stringify(parentRel === '.' ? hit : `${parentRel}/${hit}`)}?` : 'create the file or remove the entry',
      });
      continue;
    }
    const escape = await symlinkEscape(realRoot, root, absolute);
    if (escape) {
      problems.push({
        index,
        message: `${JSON.stringify(entry)} is a symlink to ${escape}, outside the project root`,
        hint: 'copy the target into the project instead of linking to it',
      });
      continue;
    }
    const real = await fs.realpath(absolute);
    const realStat = stat.isSymbolicLink() ? await fs.stat(real) : stat;
    if (realStat.isFile()) {
      files.push(normalized);
    } else if (realStat.isDirectory()) {
      await walkDirectory(realRoot, root, prefix, normalized, index, files, problems, new Set([real]));
    } else {
      problems.push({ index, message: `${JSON.stringify(entry)} is not a regular file or folder`, hint: 'list regular files only' });
    }
  }
  return { files: withoutRepeats(sortStringsByBytes(files)).map((file) => new ListedFile(file, prefix)), problems };
}

async function walkDirectory(
  realRoot: string,
  root: string,
  prefix: string,
  relative: string,
  index: number,
  files: string[],
  problems: BuildFileProblem[],
  seen: Set<string>,
): Promise<void> {
  const absolute = path.join(root, relative);
  // The folder's part of its files' paths, made once: `${relative}/${name}` per file made a copy
  // of it for each.
  const base = relative === '.' ? '' : `${relative}/`;
  // Sync on purpose: a build folder can hold 20,000 files, and a warm `project hash` is mostly this walk.
  const entries = readdirSync(absolute, { withFileTypes: true });
  for (const entry of entries) {
    const wait = pace();
    if (wait) await wait;
    if (entry.isFile()) {
      files.push(base + entry.name);
      continue;
    }
    const childRel = base + entry.name;
    if (entry.isSymbolicLink()) {
      const childAbs = `${absolute}/${entry.name}`;
      const escape = await symlinkEscape(realRoot, root, childAbs);
      if (escape) {
        problems.push({
          index,
          message: `${JSON.stringify(childRel)} is a symlink to ${escape}, outside the project root`,
          hint: 'copy the target into the project instead of linking to it',
        });
        continue;
      }
      const real = await fs.realpath(childAbs).catch(() => undefined);
      if (real === undefined) {
        problems.push({ index, message: `${JSON.stringify(childRel)} is a broken symlink`, hint: 'remove it or point it at a file inside the project' });
        continue;
      }
      const targetStat = await fs.stat(real);
      if (targetStat.isDirectory()) {
        if (seen.has(real)) continue; // a link loop: each folder once
        seen.add(real);
        await walkDirectory(realRoot, root, prefix, childRel, index, files, problems, seen);
      } else if (targetStat.isFile()) files.push(childRel);
    } else if (entry.isDirectory()) {
      await walkDirectory(realRoot, root, prefix, childRel, index, files, problems, seen);
    }
  }
}

/** Each path once (entries may overlap: a folder and a file in it); `files` sorted. */
function withoutRepeats(files: string[]): string[] {
  let kept = 0;
  for (let i = 0; i < files.length; i++) {
    if (kept > 0 && files[kept - 1] === files[i]) continue;
    files[kept++] = files[i]!;
  }
  files.length = kept;
  return files;
}

/** Where a path really leads when that is outside the root (any link along the way counts). */
async function symlinkEscape(realRoot: string, root: string, absolute: string): Promise<string | undefined> {
  let real: string;
  try {
    real = await fs.realpath(absolute);
  } catch {
    // broken link: report its target text if it is a link
    try {
      const target = await fs.readlink(absolute);
      const resolved = path.resolve(path.dirname(absolute), target);
      return isInside(root, resolved) ? undefined : target;
    } catch {
      return undefined;
    }
  }
  return isInside(realRoot, real) ? undefined : real;
}

/**
 * Sorting by UTF-8 bytes, the same on every OS and locale. UTF-16 code unit order is the same
 * as UTF-8 byte order except around surrogates, so only then are the bytes compared.
 */
export function compareBytes(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x < 0xd800 && y < 0xd800) return x < y ? -1 : 1;
    // Compare the bytes from the start of the character: when the strings part at the low half
    // of a surrogate pair, the equal high half before it belongs to the comparison (sliced off,
    // both halves would encode alike as U+FFFD).
    const start = i > 0 && (a.charCodeAt(i - 1) & 0xfc00) === 0xd800 ? i - 1 : i;
    return Buffer.compare(Buffer.from(a.slice(start), 'utf8'), Buffer.from(b.slice(start), 'utf8'));
  }
  return a.length - b.length;
}

/** A code unit at which UTF-16 order and UTF-8 byte order may part (surrogates and above). */
const HIGH_CODE_UNIT = /[\ud800-\uffff]/;

/** sortByBytes of strings themselves: without a key function, the engine's own sort and comparison. */
export function sortStringsByBytes(items: string[]): string[] {
  if (items.some((item) => HIGH_CODE_UNIT.test(item))) return items.sort(compareBytes);
  return items.sort();
}

/**
 * Sorts by UTF-8 bytes of `key`. When no key holds a code unit from U+D800 up (nearly always),
 * UTF-16 order is byte order and the engine's own string comparison does it, several times
 * faster than compareBytes on a 20,000-file build folder.
 */
export function sortByBytes<T>(items: T[], key: (item: T) => string): T[] {
  if (items.some((item) => HIGH_CODE_UNIT.test(key(item)))) return items.sort((a, b) => compareBytes(key(a), key(b)));
  return items.sort((a, b) => {
    const x = key(a);
    const y = key(b);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}
