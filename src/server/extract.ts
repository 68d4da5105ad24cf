import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Parser, type ReadEntry } from 'tar';

export interface ExtractLimits {
  /** Total bytes of all files. */
  maxBytes: number;
  maxFiles: number;
}

export class UnsafeTarball extends Error {
  constructor(message: string) {
    super(message);
  }
}

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);

/**
 * Extracts a (gzipped) tarball into `dest`, a new folder, refusing anything unsafe: absolute
 * paths, `..`, paths through a symlink, links that point outside, hard links to anything but
 * a file of the same archive, devices and fifos, and more files or bytes than the limits.
 * On refusal, `dest` is removed: nothing is left behind.
 */
export async function extractTarball(source: Readable, dest: string, limits: ExtractLimits): Promise<{ files: number; bytes: number }> {
  await fs.mkdir(dest, { recursive: false });
  const realDest = await fs.realpath(dest);
  let files = 0;
  let bytes = 0;
  let failure: Error | undefined;
  const regular = new Set<string>();
  const links = new Set<string>();
  const pending: Array<Promise<void>> = [];

  const parser = new Parser({ strict: true });
  const fail = (error: Error): void => {
    failure ??= error;
    source.unpipe?.(parser);
    source.destroy();
  };

  parser.on('entry', (entry: ReadEntry) => {
    if (failure) {
      entry.resume();
      return;
    }
    try {
      const work = handleEntry(entry);
      pending.push(work.catch((error: Error) => fail(error)));
    } catch (error) {
      entry.resume();
      fail(error as Error);
    }
  });

  const handleEntry = (entry: ReadEntry): Promise<void> => {
    const name = safeName(entry.path);
    if (name === undefined) {
      entry.resume();
      return Promise.resolve(); // "./" itself
    }
    const target = path.join(realDest, name);
    files++;
    if (files > limits.maxFiles) throw new UnsafeTarball(`too many entries: more than ${limits.maxFiles}`);
    for (const link of links) {
      if (name.startsWith(`${link}/`)) throw new UnsafeTarball(`entry "${entry.path}" goes through the symlink "${link}"`);
    }
    if (entry.type === 'Directory') {
      entry.resume();
      return fs.mkdir(target, { recursive: true, mode: 0o755 }).then(() => undefined);
    }
    if (FILE_TYPES.has(entry.type)) {
      bytes += entry.size;
      if (bytes > limits.maxBytes) throw new UnsafeTarball(`too large: more than ${limits.maxBytes} bytes of files`);
      regular.add(name);
      const mode = (entry.mode ?? 0o644) & 0o111 ? 0o755 : 0o644;
      return (async () => {
        await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
        await assertNoLinkOnPath(realDest, name);
        await pipeline(entry, createWriteStream(target, { mode, flags: 'w' }));
      })();
    }
    if (entry.type === 'SymbolicLink') {
      entry.resume();
      const linkTarget = entry.linkpath ?? '';
      if (linkTarget === '' || path.posix.isAbsolute(linkTarget) || /^[A-Za-z]:/.test(linkTarget)) {
        throw new UnsafeTarball(`symlink "${entry.path}" points to an absolute path (${linkTarget})`);
      }
      const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(name), linkTarget));
      if (resolved === '..' || resolved.startsWith('../')) throw new UnsafeTarball(`symlink "${entry.path}" points outside the project (${linkTarget})`);
      links.add(name);
      return (async () => {
        await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
        await assertNoLinkOnPath(realDest, name);
        await fs.symlink(linkTarget, target);
      })();
    }
    if (entry.type === 'Link') {
      entry.resume();
      let linkTarget: string | undefined;
      try {
        linkTarget = safeName(entry.linkpath ?? '');
      } catch {
        linkTarget = undefined;
      }
      if (linkTarget === undefined || !regular.has(linkTarget)) {
        throw new UnsafeTarball(`hard link "${entry.path}" points to ${entry.linkpath}, which is not a file of this archive`);
      }
      regular.add(name);
      return (async () => {
        await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
        await assertNoLinkOnPath(realDest, name);
        await fs.copyFile(path.join(realDest, linkTarget), target);
      })();
    }
    entry.resume();
    throw new UnsafeTarball(`entry "${entry.path}" is a ${describeType(entry.type)}; only files, folders and symlinks are allowed`);
  };

  try {
    await pipeline(source, parser).catch((error: Error) => {
      if (!failure) failure = isMalformedTarball(error) ? new UnsafeTarball(`not a valid .tar.gz: ${error.message}`) : error;
    });
    await Promise.all(pending);
    if (failure) throw failure;
    return { files, bytes };
  } catch (error) {
    await fs.rm(dest, { recursive: true, force: true });
    throw error;
  }
}

/** The normalized relative name, undefined for the root itself; throws for unsafe names. */
function safeName(raw: string): string | undefined {
  if (raw.includes('\0')) throw new UnsafeTarball(`entry name contains a NUL byte`);
  if (raw.startsWith('/') || /^[A-Za-z]:[\\/]/.test(raw) || raw.startsWith('\\')) throw new UnsafeTarball(`entry "${raw}" has an absolute path`);
  const parts = raw.split(/[\\/]+/).filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw new UnsafeTarball(`entry "${raw}" escapes the project with ".."`);
  return parts.length === 0 ? undefined : parts.join('/');
}

/** No component of `name` (under root) may be a symlink: writing through one could land anywhere. */
async function assertNoLinkOnPath(root: string, name: string): Promise<void> {
  const parts = name.split('/');
  let current = root;
  for (const part of parts) {
    current = path.join(current, part);
    const stat = await fs.lstat(current).catch(() => undefined);
    if (!stat) return;
    if (stat.isSymbolicLink()) throw new UnsafeTarball(`entry "${name}" goes through a symlink`);
  }
}

function describeType(type: string): string {
  switch (type) {
    case 'CharacterDevice':
      return 'character device';
    case 'BlockDevice':
      return 'block device';
    case 'FIFO':
      return 'fifo';
    default:
      return `"${type}" entry`;
  }
}

/** node-tar's codes for bytes that are not a valid tarball (a gzip stream it cannot inflate is TAR_ABORT). */
function isMalformedTarball(error: Error): boolean {
  const tarCode = 'tarCode' in error ? error.tarCode : undefined;
  return tarCode === 'TAR_BAD_ARCHIVE' || tarCode === 'TAR_ENTRY_INVALID' || tarCode === 'TAR_ABORT';
}
