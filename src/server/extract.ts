import { constants as fsConstants } from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { errnoCode } from '../errors.js';
import { COMPRESSION_ALLOWANCE_BYTES, DEFAULT_MAX_COMPRESSION_RATIO, DEFAULT_TREE_LIMITS, type TreeLimits } from './limits.js';
import type { ProblemKind } from './errors.js';

export interface ExtractLimits extends Partial<TreeLimits> {
  /** Total bytes of all files, hard-linked copies included. */
  maxBytes: number;
  /** Entries of any kind, counted before each is written. */
  maxFiles: number;
  /** Bytes of tar per byte of gzip read, past the first `compressionAllowanceBytes` (a gzip bomb guard). */
  maxCompressionRatio?: number;
  compressionAllowanceBytes?: number;
  /** Disk this push may still take (the quotas left): past it, `refusal` is thrown. */
  quota?: { bytes: number; refusal: (expandedBytes: number) => ExtractOverLimit };
}

/** Setting names quoted in refusals, so a message says what raises the limit. */
export const TREE_LIMIT_SETTINGS: Record<keyof TreeLimits | 'maxCompressionRatio', string> = {
  maxDepth: 'CYCLE_SERVER_MAX_DEPTH',
  maxPathBytes: 'CYCLE_SERVER_MAX_PATH_BYTES',
  maxSymlinks: 'CYCLE_SERVER_MAX_SYMLINKS',
  maxCompressionRatio: 'cycle server --max-compression-ratio',
};

/** The archive is refused: the client's fault (a 400), the message names the entry. */
export class UnsafeTarball extends Error {
  constructor(message: string) {
    super(message);
  }
}

/** Refused for its size rather than its shape: too large for one push, or past a disk quota of the server. */
export class ExtractOverLimit extends UnsafeTarball {
  constructor(
    readonly kind: Extract<ProblemKind, 'too-large' | 'insufficient-storage'>,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The archive was fine but the server could not write it (disk full, permissions): a 500. */
export class ExtractFailed extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);
/** New files only: never through a link, never over something already there. */
const CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW;
const READ_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW;
/** Links followed while resolving one target: Linux's own limit (MAXSYMLINKS). */
const MAX_LINK_HOPS = 40;
/** Longest entry name quoted in a message. */
const SHOWN_NAME_CHARS = 120;

/**
 * Extracts a gzipped tarball into `dest`, a new folder: strictly in order, one entry at a time,
 * each checked against what is already on disk. Refused (UnsafeTarball): absolute names, `..`
 * in names, anything under a symlink or a file, symlinks whose target, followed through the
 * links already extracted, leaves the tree (or could, once a missing folder on its way becomes
 * a link), a name that is already a symlink or a folder of another kind, hard links to anything
 * but an earlier file, devices, fifos, and more entries or bytes than the limits (counted before
 * anything is written), entries deeper, longer-named or more linked than the tree limits, a tar
 * more than `maxCompressionRatio` times its gzip (413) and bytes past the quota left (507). Files are created with O_EXCL | O_NOFOLLOW, so nothing can redirect a
 * write. On any failure `dest` is removed and the promise settles: nothing is left behind.
 */
export async function extractTarball(source: Readable, dest: string, limits: ExtractLimits): Promise<{ files: number; bytes: number }> {
  await fs.mkdir(dest, { mode: 0o755 });
  const tree = new TreeWriter(await fs.realpath(dest), limits);
  try {
    await feed(source, tree);
    return { files: tree.entries, bytes: tree.bytes };
  } catch (error) {
    source.destroy();
    await tree.abandon();
    await fs.rm(dest, { recursive: true, force: true });
    throw asExtractError(error);
  }
}

/**
 * Decompresses and parses the archive chunk by chunk; after each chunk, the entries it
 * completed are written before the next chunk is read. The parser hands out one entry at a
 * time (the next only once the previous has ended), so order is the archive's.
 */
async function feed(source: Readable, tree: TreeWriter): Promise<void> {
  const parser = new Parser({ strict: true });
  let parseError: Error | undefined;
  let endOfArchive = false;
  parser.on('entry', (entry: ReadEntry) => tree.queue(entry));
  // Unknown entry types and oversized pax headers: refused, not silently skipped.
  parser.on('ignoredEntry', (entry: ReadEntry) => tree.queue(entry));
  parser.on('error', (error: Error & { tarCode?: string }) => {
    // An archive of nothing but its end marker (GNU tar's, and ours, of an empty folder) is whole:
    // node-tar calls it "unrecognized" only because it saw no entry.
    if (error.tarCode === 'TAR_BAD_ARCHIVE' && endOfArchive && tree.entries === 0 && /Unrecognized archive format/.test(error.message)) return;
    parseError ??= error;
  });
  parser.on('eof', () => {
    endOfArchive = true;
  });
  const check = (): void => {
    if (parseError) throw new UnsafeTarball(`not a valid .tar.gz: ${parseError.message}`);
  };
  // The tar stream itself may be at most this long: file bytes, a header and padding per entry,
  // and pax headers (long names). This bounds the CPU a small, highly compressed upload costs.
  const maxTarBytes = tree.limits.maxBytes + (tree.limits.maxFiles + 2) * 8192;
  let tarBytes = 0;
  // Gzip bytes read so far (gunzip reads ahead, so the ratio is never overstated).
  let gzipBytes = 0;
  const ratio = tree.limits.maxCompressionRatio ?? DEFAULT_MAX_COMPRESSION_RATIO;
  const allowance = tree.limits.compressionAllowanceBytes ?? COMPRESSION_ALLOWANCE_BYTES;
  async function* counted(input: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of input) {
      gzipBytes += chunk.length;
      yield chunk;
    }
  }
  // The consumer's own error, which pipeline may report as an abort of the streams before it.
  let stopped: unknown;
  await pipeline(source, counted, createGunzip(), async (tar: AsyncIterable<Buffer>) => {
    try {
      for await (const chunk of tar) {
        tarBytes += chunk.length;
        if (tarBytes > maxTarBytes) throw new UnsafeTarball(`too large: more than ${maxTarBytes} bytes of tar`);
        if (tarBytes > allowance && tarBytes > ratio * gzipBytes) {
          throw new ExtractOverLimit(
            'too-large',
            'compression_ratio',
            `the archive expands more than ${ratio} times (${gzipBytes} bytes of gzip gave over ${tarBytes} bytes of tar), the server's compression-ratio limit against gzip bombs; if the project really compresses this well, the server's operator can raise it (${TREE_LIMIT_SETTINGS.maxCompressionRatio} N)`,
          );
        }
        parser.write(chunk);
        check();
        await tree.writeQueued();
        check();
        if (endOfArchive) return; // what follows the end marker is never read
      }
    } catch (error) {
      stopped = error;
      throw error;
    }
  }).catch((error: unknown) => {
    // Returning at the end marker aborts the streams before it: the archive itself is whole.
    if (stopped === undefined && endOfArchive) return;
    // zlib's error reaches the consumer's loop or pipeline first, whichever wins the race.
    const first = stopped ?? error;
    // zlib's errors (Z_DATA_ERROR, Z_BUF_ERROR for a cut-off stream) are the client's.
    if (errnoCode(first)?.startsWith('Z_')) throw new UnsafeTarball(`not a valid .tar.gz: ${(first as Error).message}`);
    throw first;
  });
  parser.end();
  check();
  await tree.writeQueued();
  check();
  if (tree.busy()) throw new UnsafeTarball('not a valid .tar.gz: the archive ends inside an entry');
}

type Node = { kind: 'folder' } | { kind: 'file'; size: number } | { kind: 'symlink' };

/** Writes entries under `root`, keeping a map of what it created (the tree holds nothing else). */
class TreeWriter {
  entries = 0;
  bytes = 0;
  private symlinks = 0;
  /** By relative name; the root itself is the folder ''. */
  private readonly nodes = new Map<string, Node>([['', { kind: 'folder' }]]);
  private readonly pending: ReadEntry[] = [];
  /** A file whose body is still arriving. */
  private open: { entry: ReadEntry; name: string; handle: FileHandle } | undefined;

  private readonly shape: TreeLimits;

  constructor(
    readonly root: string,
    readonly limits: ExtractLimits,
  ) {
    const { maxDepth, maxPathBytes, maxSymlinks } = { ...DEFAULT_TREE_LIMITS, ...definedOnly(limits) };
    this.shape = { maxDepth, maxPathBytes, maxSymlinks };
  }

  /** Limits are checked here, as each header is parsed, before anything is written. */
  queue(entry: ReadEntry): void {
    this.pending.push(entry);
    this.entries++;
    if (this.entries > this.limits.maxFiles) throw new UnsafeTarball(`too many entries: more than ${this.limits.maxFiles}`);
    this.checkShape(entry);
    this.count(entry.size ?? 0);
  }

  /** Depth, name length and link count: what later lookups of this entry cost is bounded by them. */
  private checkShape(entry: ReadEntry): void {
    const { maxDepth, maxPathBytes, maxSymlinks } = this.shape;
    const raw = entry.path ?? '';
    for (const [what, value] of [
      ['name', raw],
      ['link target', entry.linkpath ?? ''],
    ] as const) {
      const bytes = Buffer.byteLength(value);
      if (bytes > maxPathBytes) {
        throw new UnsafeTarball(
          `entry "${shown(raw)}": its ${what} is ${bytes} bytes; this server takes at most ${maxPathBytes} (${TREE_LIMIT_SETTINGS.maxPathBytes})`,
        );
      }
    }
    let depth = 0;
    for (const part of raw.split(/[\\/]+/)) if (part !== '' && part !== '.') depth++;
    if (entry.type !== 'Directory') depth--; // a file's own name is not a folder
    if (depth > maxDepth) {
      throw new UnsafeTarball(`entry "${shown(raw)}" is ${depth} folders deep; this server takes at most ${maxDepth} (${TREE_LIMIT_SETTINGS.maxDepth})`);
    }
    if (entry.type === 'SymbolicLink' && ++this.symlinks > maxSymlinks) {
      throw new UnsafeTarball(
        `entry "${shown(raw)}": more than ${maxSymlinks} symlinks; this server takes at most ${maxSymlinks} (${TREE_LIMIT_SETTINGS.maxSymlinks})`,
      );
    }
  }

  busy(): boolean {
    return this.open !== undefined || this.pending.length > 0;
  }

  /** Writes what the parser has handed out so far, returning when it needs more input. */
  async writeQueued(): Promise<void> {
    for (;;) {
      if (this.open) {
        const { entry, handle } = this.open;
        const chunk: Buffer | null = entry.read();
        if (chunk !== null) {
          await writeAll(handle, chunk);
          continue;
        }
        if (!entry.emittedEnd) return; // the rest of the body is in the next chunk
        this.open = undefined;
        await handle.close();
        continue;
      }
      const entry = this.pending.shift();
      if (!entry) return;
      try {
        await this.start(entry);
      } catch (error) {
        throw asExtractError(error, shown(entry.path));
      }
    }
  }

  /** After a failure: closes the file being written so the tree can be removed. */
  async abandon(): Promise<void> {
    const open = this.open;
    this.open = undefined;
    await open?.handle.close().catch(() => undefined);
  }

  private count(size: number): void {
    this.bytes += size;
    if (this.bytes > this.limits.maxBytes) throw new UnsafeTarball(`too large: more than ${this.limits.maxBytes} bytes of files`);
    const quota = this.limits.quota;
    if (quota && this.bytes > quota.bytes) throw quota.refusal(this.bytes);
  }

  private async start(entry: ReadEntry): Promise<void> {
    const isFile = FILE_TYPES.has(entry.type);
    if (!isFile) entry.resume(); // no body to keep; the parser moves on once it has ended
    if (entry.ignore || !(isFile || ['Directory', 'SymbolicLink', 'Link'].includes(entry.type))) {
      throw new UnsafeTarball(`entry "${shown(entry.path)}" is a ${describeType(entry.type)}; only files, folders, symlinks and hard links are allowed`);
    }
    const name = safeName(entry.path);
    if (name === undefined) {
      if (entry.type === 'Directory') return; // "./": the root itself
      throw new UnsafeTarball(`entry "${shown(entry.path)}" names the project's root folder, which only a folder entry may`);
    }
    await this.ensureParents(name);
    const existing = this.nodes.get(name);
    const absolute = path.join(this.root, name);

    if (entry.type === 'Directory') {
      if (existing?.kind === 'folder') return;
      if (existing) throw alreadyThere(name, existing, 'a folder');
      await fs.mkdir(absolute, { mode: 0o755 });
      this.nodes.set(name, { kind: 'folder' });
      return;
    }
    // A later file of the same name replaces an earlier file (as tar does); nothing else is
    // replaced: a link or folder changed later would change what earlier links resolve to.
    if (existing && existing.kind !== 'file') throw alreadyThere(name, existing, entry.type === 'SymbolicLink' ? 'a symlink' : 'a file');
    if (entry.type === 'SymbolicLink') {
      if (existing) throw alreadyThere(name, existing, 'a symlink');
      const target = entry.linkpath ?? '';
      if (target === '' || target.includes('\0')) throw new UnsafeTarball(`symlink "${shown(entry.path)}" has an empty or NUL-containing target`);
      if (path.posix.isAbsolute(target) || /^[A-Za-z]:/.test(target)) {
        throw new UnsafeTarball(`symlink "${shown(entry.path)}" points to an absolute path (${shown(target)})`);
      }
      if (!(await this.staysInside(parentParts(name), target)))
        throw new UnsafeTarball(`symlink "${shown(entry.path)}" points outside the project (${shown(target)})`);
      await fs.symlink(target, absolute);
      this.nodes.set(name, { kind: 'symlink' });
      return;
    }
    if (existing) {
      await fs.unlink(absolute);
      this.nodes.delete(name);
    }
    const mode = (entry.mode ?? 0o644) & 0o111 ? 0o755 : 0o644;
    if (entry.type === 'Link') {
      await this.copyHardLink(entry, name, absolute);
      return;
    }
    const handle = await fs.open(absolute, CREATE_FLAGS, mode);
    this.nodes.set(name, { kind: 'file', size: entry.size ?? 0 });
    this.open = { entry, name, handle };
  }

  /**
   * Every folder above `name` is a folder this archive made (created here when missing). A
   * folder in the map was made with every folder above it, so a known parent ends the check:
   * each entry costs one lookup, and each folder is created (and climbed past) once.
   */
  private async ensureParents(name: string): Promise<void> {
    const slash = name.lastIndexOf('/');
    if (slash < 0) return;
    const missing: string[] = [];
    for (let prefix = name.slice(0, slash); ; ) {
      const node = this.nodes.get(prefix);
      if (node?.kind === 'folder') break;
      if (node?.kind === 'symlink') throw new UnsafeTarball(`entry "${shown(name)}" goes through the symlink "${shown(prefix)}"`);
      if (node?.kind === 'file') throw new UnsafeTarball(`entry "${shown(name)}" goes through "${shown(prefix)}", which is a file`);
      missing.push(prefix);
      const up = prefix.lastIndexOf('/');
      if (up < 0) break;
      prefix = prefix.slice(0, up);
    }
    for (const folder of missing.reverse()) {
      await fs.mkdir(path.join(this.root, folder), { mode: 0o755 });
      this.nodes.set(folder, { kind: 'folder' });
    }
  }

  /**
   * Hard links become copies of an earlier regular file of this archive, named exactly (not
   * through a link), and their bytes count toward the limit.
   */
  private async copyHardLink(entry: ReadEntry, name: string, absolute: string): Promise<void> {
    let targetName: string | undefined;
    try {
      targetName = safeName(entry.linkpath ?? '');
    } catch {
      targetName = undefined;
    }
    const target = targetName === undefined ? undefined : this.nodes.get(targetName);
    if (targetName === undefined || target?.kind !== 'file') {
      throw new UnsafeTarball(`hard link "${shown(entry.path)}" points to "${shown(entry.linkpath ?? '')}", which is not a file earlier in this archive`);
    }
    this.count(target.size);
    const source = await fs.open(path.join(this.root, targetName), READ_FLAGS);
    try {
      const stat = await source.stat();
      const copy = await fs.open(absolute, CREATE_FLAGS, stat.mode & 0o777);
      this.nodes.set(name, { kind: 'file', size: target.size });
      try {
        const buffer = Buffer.allocUnsafe(Math.min(1 << 20, Math.max(1, stat.size)));
        for (;;) {
          const { bytesRead } = await source.read(buffer, 0, buffer.length, null);
          if (bytesRead === 0) break;
          await writeAll(copy, buffer.subarray(0, bytesRead));
        }
      } finally {
        await copy.close();
      }
    } finally {
      await source.close();
    }
  }

  /**
   * Whether a symlink in folder `from` with this target resolves inside the tree, following the
   * links on disk as the kernel would: ".." after a link climbs from where the link led. A
   * component that does not exist yet may later become a link (checked then, to stay inside),
   * so what follows it must not climb. Cost: one lstat per component and link followed.
   */
  private async staysInside(from: string[], target: string): Promise<boolean> {
    const at = [...from]; // real folders only, from the root
    const todo = target.split('/').reverse(); // a stack: the next component last
    let hops = 0;
    while (todo.length > 0) {
      const part = todo.pop()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (at.length === 0) return false;
        at.pop();
        continue;
      }
      const here = path.join(this.root, ...at, part);
      const stat = await fs.lstat(here).catch((error: unknown) => {
        if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return undefined;
        throw error;
      });
      if (stat?.isSymbolicLink()) {
        if (++hops > MAX_LINK_HOPS) return false;
        const next = await fs.readlink(here);
        if (path.posix.isAbsolute(next)) return false;
        todo.push(...next.split('/').reverse());
        continue;
      }
      if (stat?.isDirectory()) {
        at.push(part);
        continue;
      }
      // Missing, or a file (which stays a file): the rest is resolved later, if ever.
      return !todo.includes('..');
    }
    return true;
  }
}

async function writeAll(handle: FileHandle, chunk: Buffer): Promise<void> {
  let written = 0;
  while (written < chunk.length) written += (await handle.write(chunk, written, chunk.length - written)).bytesWritten;
}

/** The limits given, without keys set to undefined (which would hide the defaults). */
function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function parentParts(name: string): string[] {
  return name.split('/').slice(0, -1);
}

function alreadyThere(name: string, existing: Node, wanted: string): UnsafeTarball {
  const what = existing.kind === 'folder' ? 'a folder' : existing.kind === 'file' ? 'a file' : 'a symlink';
  return new UnsafeTarball(
    `entry "${shown(name)}" is ${wanted}, but "${shown(name)}" is already ${what} earlier in this archive; each name may appear once (a file may be replaced by a later file)`,
  );
}

/** The normalized relative name, undefined for the root itself; throws for unsafe names. */
function safeName(raw: string): string | undefined {
  if (raw.includes('\0')) throw new UnsafeTarball(`entry name contains a NUL byte`);
  if (raw.startsWith('/') || /^[A-Za-z]:[\\/]/.test(raw) || raw.startsWith('\\')) throw new UnsafeTarball(`entry "${shown(raw)}" has an absolute path`);
  const parts = raw.split(/[\\/]+/).filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw new UnsafeTarball(`entry "${shown(raw)}" escapes the project with ".."`);
  return parts.length === 0 ? undefined : parts.join('/');
}

function shown(name: string): string {
  return name.length > SHOWN_NAME_CHARS ? `${name.slice(0, SHOWN_NAME_CHARS)}…` : name;
}

/**
 * What the caller may show: refusals as they are; filesystem errors by entry name and code,
 * never with the host path Node puts in its messages.
 */
function asExtractError(error: unknown, entryName?: string): Error {
  if (error instanceof UnsafeTarball || error instanceof ExtractFailed) return error;
  const code = errnoCode(error);
  const entry = entryName === undefined ? 'the archive' : `entry "${entryName}"`;
  switch (code) {
    case 'ENAMETOOLONG':
      return new UnsafeTarball(`${entry}: name too long for the server's filesystem (at most 255 bytes per folder or file name)`);
    case 'EEXIST':
    case 'ENOTDIR':
    case 'EISDIR':
    case 'ELOOP':
    case 'EINVAL':
    case 'EILSEQ':
      // Two names the archive spells differently but the filesystem takes as one (case, Unicode).
      return new UnsafeTarball(`${entry} cannot be created (${code}): it collides with an earlier entry or is not a valid name here`);
    case undefined:
      return error instanceof Error ? error : new Error(String(error));
    default:
      return new ExtractFailed(`the server could not write ${entry} (${code})`, { cause: error });
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
