import { constants, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { errnoCode } from '../errors.js';

/**
 * Writing files whose names come from elsewhere (a job's artifacts, a server's answer) inside a
 * folder the user chose, so that no name can reach past it: every folder on the way down is
 * checked with lstat and made here (never a link followed, never a file taken for a folder), names
 * that would become a tool's configuration (`.git/…`) are refused at any depth, and a file is
 * put in place only where none exists, unless the caller was asked to overwrite.
 */

/** Why a name or a path inside the folder is refused: the caller turns it into its own error. */
export class UnsafePathError extends Error {
  constructor(
    readonly relative: string,
    readonly reason: string,
  ) {
    super(`${JSON.stringify(relative)}: ${reason}`);
    this.name = 'UnsafePathError';
  }
}

/** Code points that some file systems drop from names (HFS+ ignores them): ".g\u200cit" is ".git" there. */
const IGNORED_IN_NAMES = /[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u206a-\u206f\ufeff]/g;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Folder names that make a tool run commands or take settings from what lies inside them: a
 * repository's metadata (`.git/config` runs fsmonitor and hooks on the next `git status`).
 * Compared after case folding, with trailing dots and spaces and ignorable code points removed,
 * and with the 8.3 short name Windows gives `.git`.
 */
const REFUSED_COMPONENTS = new Set(['.git', 'git~1', '.hg', '.svn', '.bzr', '_darcs', '.jj']);
/** The suffix of cycle's own part files: a name ending so could be taken for one. */
export const PART_SUFFIX = '.cycle-part';

/** Why a relative name (already split on "/" and cleaned of "..") may not be written, or undefined when it may. */
export function refusedNameReason(relative: string): string | undefined {
  const parts = relative.split('/');
  for (const part of parts) {
    if (CONTROL_CHARACTERS.test(part)) return 'it holds control characters';
    const folded = part
      .replace(IGNORED_IN_NAMES, '')
      .replace(/[. ]+$/, '')
      .toLowerCase();
    const bare = part.replace(IGNORED_IN_NAMES, '').toLowerCase().replace(/[ ]+$/, '');
    if (REFUSED_COMPONENTS.has(folded) || REFUSED_COMPONENTS.has(bare))
      return `it has a "${part}" component (a repository's metadata, which runs commands on the next git/hg/svn call)`;
  }
  if (parts.at(-1)!.toLowerCase().endsWith(PART_SUFFIX)) return `it ends in "${PART_SUFFIX}" (the suffix of cycle's own part files)`;
  return undefined;
}

async function lstatOrUndefined(file: string): Promise<Stats | undefined> {
  try {
    return await fs.lstat(file);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Makes the folders of `relative`'s parent inside `root`, one at a time: each that exists must be
 * a real folder (not a link, not a file); each that does not is made here. Returns the parent.
 * `create: false` only checks (a missing folder is then fine: nothing is there).
 */
export async function containedParent(root: string, relative: string, create = true): Promise<string> {
  const parts = relative.split('/');
  let dir = root;
  for (const [index, part] of parts.slice(0, -1).entries()) {
    dir = path.join(dir, part);
    const shown = parts.slice(0, index + 1).join('/');
    const stat = await lstatOrUndefined(dir);
    if (stat?.isSymbolicLink()) throw new UnsafePathError(relative, `"${shown}" is a symbolic link here; cycle does not write through links`);
    if (stat && !stat.isDirectory()) throw new UnsafePathError(relative, `"${shown}" exists here and is not a folder`);
    if (!stat) {
      if (!create) return dir;
      try {
        await fs.mkdir(dir);
      } catch (error) {
        // Made by someone else meanwhile: checked again on the next step's lstat (a link is refused there).
        if (errnoCode(error) !== 'EEXIST') throw error;
        const again = await fs.lstat(dir);
        if (!again.isDirectory()) throw new UnsafePathError(relative, `"${shown}" appeared here and is not a folder`);
      }
    }
  }
  return dir;
}

/** What lies at `relative` inside `root` (not following a link): undefined when nothing. */
export async function containedStat(root: string, relative: string): Promise<Stats | undefined> {
  const parent = await containedParent(root, relative, false);
  return lstatOrUndefined(path.join(parent, path.basename(relative)));
}

/**
 * Opens a file for writing without following a link at its name: `O_NOFOLLOW` (a link there is
 * ELOOP), created when missing, truncated or appended to.
 */
export async function openNoFollow(file: string, mode: 'truncate' | 'append'): Promise<fs.FileHandle> {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW | (mode === 'append' ? constants.O_APPEND : constants.O_TRUNC);
  try {
    return await fs.open(file, flags, 0o666);
  } catch (error) {
    if (errnoCode(error) === 'ELOOP') throw new UnsafePathError(path.basename(file), 'it is a symbolic link; cycle does not write through links');
    throw error;
  }
}

/**
 * Puts the whole file `temp` (in `root`) at `relative` inside `root`: the folders on the way are
 * checked and made as by `containedParent`; where something already exists at the name, it is
 * refused unless `overwrite` (then a regular file or a link is replaced, the link itself and not
 * what it points to; a folder never is). Without `overwrite`, a hard link makes the file appear
 * only where nothing is (never replacing a file made meanwhile); a rename where the file system
 * has no hard links.
 */
export async function placeContained(root: string, temp: string, relative: string, overwrite: boolean): Promise<string> {
  const reason = refusedNameReason(relative);
  if (reason) throw new UnsafePathError(relative, reason);
  const parent = await containedParent(root, relative);
  const target = path.join(parent, path.basename(relative));
  const existing = await lstatOrUndefined(target);
  if (existing?.isDirectory()) throw new UnsafePathError(relative, 'a folder of that name exists here');
  if (existing && !overwrite) throw new ExistsError(relative);
  if (overwrite) {
    await fs.rename(temp, target);
    return target;
  }
  try {
    await fs.link(temp, target);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'EEXIST') throw new ExistsError(relative);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS' && code !== 'EXDEV') throw error;
    // No hard links here (some network and FUSE file systems): checked above, then renamed.
    await fs.rename(temp, target);
    return target;
  }
  await fs.rm(temp, { force: true });
  return target;
}

/** A file is already at the name and the caller did not ask to overwrite. */
export class ExistsError extends UnsafePathError {
  constructor(relative: string) {
    super(relative, 'a file of that name exists here');
    this.name = 'ExistsError';
  }
}
