import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { volumeFilesRequestSchema, type VolumeFile, type VolumeSummary } from '../api/schemas.js';
import { BUILTIN_VOLUME_PREFIX, VOLUME_NAME_PATTERN } from '../project/names.js';
import type { Clock } from '../context.js';
import { type DB, timestamp, parseJson } from './db.js';
import { invalid, malformed, notFound, tooLarge, zodError } from './errors.js';
import { receiveBody } from './receive.js';
import type { PageRequest } from './jobs/paging.js';
import type { Layout } from './layout.js';

export const SHA256_PATTERN = /^[0-9a-f]{64}$/;

interface VolumeRow {
  name: string;
  files: string;
  file_count: number;
  bytes: number;
  version: string;
  updated_at: string;
}

export interface VolumeServiceOptions {
  db: DB;
  /** Where stored timestamps come from (the system's clock unless set). */
  clock?: Clock;
  layout: Layout;
  /** The largest blob (one file of a volume) accepted. */
  maxBlobBytes: number;
  log: (line: string) => void;
}

/**
 * Volumes of the account (this server has one): a manifest {path → sha256, size, executable}
 * per name, over one content store of blobs, so uploading a folder again sends only the files
 * the store lacks. A committed volume is materialised as a folder of hard links (copies for
 * executable files, whose mode a link would share) that jobs mount read-only.
 */
export class VolumeService {
  constructor(private readonly options: VolumeServiceOptions) {}

  static checkName(name: string): string {
    if (!VOLUME_NAME_PATTERN.test(name))
      throw malformed(
        'invalid_volume_name',
        `invalid volume name "${name}": expected 1-63 characters: lowercase letters, digits, ".", "_" or "-", starting with a letter or digit`,
        'name',
      );
    return name;
  }

  list(): VolumeSummary[] {
    const rows = this.options.db.prepare('SELECT name, file_count, bytes, updated_at FROM volumes ORDER BY name').all() as Array<
      Pick<VolumeRow, 'name' | 'file_count' | 'bytes' | 'updated_at'>
    >;
    return rows.map((row) => ({ name: row.name, files: row.file_count, bytes: row.bytes, updated_at: row.updated_at }));
  }

  /** The sha256s of `files` that the blob store lacks (each once, in the order given). */
  async missing(body: unknown): Promise<string[]> {
    const files = parseFiles(body);
    const missing = new Set<string>();
    for (const file of files) {
      if (missing.has(file.sha256)) continue;
      if (!(await isFile(this.options.layout.volumeBlob(file.sha256)))) missing.add(file.sha256);
    }
    return [...missing];
  }

  /**
   * One blob, its bytes checked against the sha256 it is stored under. Already there: nothing is
   * written (the body is drained). `declared` is the length the client announced.
   */
  async putBlob(sha256: string, body: Readable, declared: number): Promise<{ sha256: string; size: number; stored: boolean }> {
    const { layout, maxBlobBytes } = this.options;
    if (!SHA256_PATTERN.test(sha256))
      throw malformed('invalid_sha256', `invalid blob name "${sha256}": expected a lowercase hex sha256 (64 characters)`, 'sha256');
    const target = layout.volumeBlob(sha256);
    if (await isFile(target)) {
      body.resume();
      return { sha256, size: (await fs.stat(target)).size, stored: false };
    }
    if (declared > maxBlobBytes) throw tooLarge('payload_too_large', `the file is over the ${maxBlobBytes}-byte limit for one file of a volume`);
    await fs.mkdir(layout.tmp, { recursive: true });
    const temp = path.join(layout.tmp, `blob-${randomBytes(6).toString('hex')}`);
    try {
      const { size, sha256: digest } = await receiveBody(body, temp, {
        maxBytes: maxBlobBytes,
        tooLarge: `the file is over the ${maxBlobBytes}-byte limit for one file of a volume`,
        mode: 0o444,
      });
      if (digest !== sha256)
        throw invalid('checksum_mismatch', `the body's sha256 is ${digest}, not ${sha256}: nothing was stored; send the file's exact bytes`, 'sha256');
      await fs.mkdir(path.dirname(target), { recursive: true });
      await fs.rename(temp, target);
      this.options.log(`volume blob ${sha256.slice(0, 12)} stored (${size} bytes)`);
      return { sha256, size, stored: true };
    } finally {
      await fs.rm(temp, { force: true });
    }
  }

  /**
   * Makes `files` the volume's content: every blob must be stored (else 422 naming how many are
   * missing); the folder jobs mount is built aside and takes the old one's place at once. The
   * previous version's folder is kept for jobs that started with it; older ones are removed.
   */
  async commit(name: string, body: unknown): Promise<VolumeSummary & { unchanged: boolean }> {
    const { db, layout } = this.options;
    const files = parseFiles(body);
    checkPaths(files);
    const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const manifest = JSON.stringify(sorted.map((f) => [f.path, f.sha256, f.size, f.executable]));
    const version = createHash('sha256').update(manifest).digest('hex');
    const bytes = sorted.reduce((sum, f) => sum + f.size, 0);
    const current = db.prepare('SELECT * FROM volumes WHERE name = ?').get(name) as VolumeRow | undefined;
    if (current?.version === version && (await isDirectory(layout.volumeTree(name, version)))) {
      return { name, files: current.file_count, bytes: current.bytes, updated_at: current.updated_at, unchanged: true };
    }
    const lacking = await this.missing({ files: sorted });
    if (lacking.length > 0) {
      throw invalid(
        'missing_blobs',
        `${lacking.length} file${lacking.length === 1 ? '' : 's'} of the volume ${lacking.length === 1 ? 'is' : 'are'} not uploaded yet (sha256 ${lacking[0]!.slice(0, 12)}…): PUT /api/v1/volumes/blobs/<sha256> first (cycle volume upload does)`,
        'files',
      );
    }
    const tree = layout.volumeTree(name, version);
    if (!(await isDirectory(tree))) {
      const building = path.join(layout.tmp, `volume-${randomBytes(6).toString('hex')}`);
      try {
        await fs.mkdir(building, { recursive: true, mode: 0o755 });
        for (const file of sorted) {
          const target = path.join(building, ...file.path.split('/'));
          await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o755 });
          const blob = layout.volumeBlob(file.sha256);
          if (file.executable) {
            await fs.copyFile(blob, target);
            await fs.chmod(target, 0o555);
          } else await fs.link(blob, target).catch(() => fs.copyFile(blob, target));
        }
        await fs.mkdir(layout.volumeTrees(name), { recursive: true });
        await fs.rename(building, tree).catch(async (error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
        });
      } finally {
        await fs.rm(building, { recursive: true, force: true });
      }
    }
    const at = timestamp(this.options.clock);
    db.prepare(
      'INSERT INTO volumes (name, files, file_count, bytes, version, updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET files = excluded.files, file_count = excluded.file_count, bytes = excluded.bytes, version = excluded.version, updated_at = excluded.updated_at',
    ).run(name, manifest, sorted.length, bytes, version, at);
    await this.pruneTrees(name, [version, ...(current ? [current.version] : [])]);
    this.options.log(`volume ${name}: ${sorted.length} files, ${bytes} bytes (version ${version.slice(0, 12)})`);
    return { name, files: sorted.length, bytes, updated_at: at, unchanged: false };
  }

  /** The volume's files as committed, sorted by path (a machine mounting it reads them all). */
  files(name: string): VolumeFile[] {
    return this.stored(this.require(name)).map(volumeFile);
  }

  /**
   * A page of the volume's files (sorted by path), for a client listing them: `cursor` is the
   * place of the page's first file, `next_cursor` the next page's (null on the last). A volume
   * uploaded again between two pages is read in its new version from that place on.
   */
  filesPage(name: string, page: PageRequest): { name: string; files: VolumeFile[]; total: number; next_cursor: string | null } {
    const all = this.stored(this.require(name));
    const end = Math.min(all.length, page.cursor + page.limit);
    const files = all.slice(page.cursor, end).map(volumeFile);
    return { name, files, total: all.length, next_cursor: end < all.length ? String(end) : null };
  }

  /**
   * A volume's stored list, parsed once per version: the web page reads a 200,000-file volume a
   * page at a time, and parsing its whole list for every page would cost more than the page.
   */
  private stored(row: VolumeRow): Array<[string, string, number, boolean]> {
    if (this.parsed?.name !== row.name || this.parsed.version !== row.version)
      this.parsed = { name: row.name, version: row.version, files: parseJson<Array<[string, string, number, boolean]>>(row.files, []) };
    return this.parsed.files;
  }

  private parsed: { name: string; version: string; files: Array<[string, string, number, boolean]> } | undefined;

  async remove(name: string): Promise<{ name: string; removed: true }> {
    this.require(name);
    this.options.db.prepare('DELETE FROM volumes WHERE name = ?').run(name);
    // Blobs stay: other volumes may share them, and a new upload of the same files sends nothing.
    await fs.rm(this.options.layout.volumeTrees(name), { recursive: true, force: true });
    this.options.log(`volume ${name}: removed`);
    return { name, removed: true };
  }

  private require(name: string): VolumeRow {
    const row = this.options.db.prepare('SELECT * FROM volumes WHERE name = ?').get(name) as VolumeRow | undefined;
    if (!row) throw notFound(`no volume "${name}": upload it with \`cycle volume upload DIR --name ${name}\``, 'name');
    return row;
  }

  private async pruneTrees(name: string, keep: string[]): Promise<void> {
    const dir = this.options.layout.volumeTrees(name);
    for (const entry of await fs.readdir(dir).catch(() => [] as string[])) {
      if (!keep.includes(entry)) await fs.rm(path.join(dir, entry), { recursive: true, force: true });
    }
  }
}

/** The volumes a manifest names that this server does not have (platform `builtin/` ones are the operator's). */
export function unknownVolumes(db: DB, names: readonly string[]): string[] {
  const query = db.prepare('SELECT 1 FROM volumes WHERE name = ?');
  return names.filter((name) => !name.startsWith(BUILTIN_VOLUME_PREFIX) && query.get(name) === undefined);
}

/**
 * The host folder to mount for a manifest's volume: the uploaded volume's current version, or
 * for `builtin/<name>` the operator's folder (made empty when absent). Undefined: no such volume.
 */
export async function volumeMountSource(db: DB, layout: Layout, name: string): Promise<string | undefined> {
  if (name.startsWith(BUILTIN_VOLUME_PREFIX)) {
    const folder = layout.builtinVolume(name.slice(BUILTIN_VOLUME_PREFIX.length));
    await fs.mkdir(folder, { recursive: true });
    return folder;
  }
  const row = db.prepare('SELECT version FROM volumes WHERE name = ?').get(name) as { version: string } | undefined;
  if (!row) return undefined;
  const tree = layout.volumeTree(name, row.version);
  return (await isDirectory(tree)) ? tree : undefined;
}

function parseFiles(body: unknown): VolumeFile[] {
  const parsed = volumeFilesRequestSchema.safeParse(body);
  if (!parsed.success) throw zodError(parsed.error);
  return parsed.data.files;
}

/** Relative POSIX paths that stay inside the volume, each once, none both a file and a folder. */
function checkPaths(files: readonly VolumeFile[]): void {
  const seen = new Set<string>();
  for (const [index, file] of files.entries()) {
    const parts = file.path.split('/');
    if (file.path.includes('\0') || file.path.includes('\\') || parts.some((part) => part === '' || part === '.' || part === '..')) {
      throw malformed(
        'invalid_path',
        `files[${index}].path ${JSON.stringify(file.path)}: expected a relative path inside the volume ("a/b.txt": no leading "/", no "." or ".." parts, no "\\\\")`,
        `files.${index}.path`,
      );
    }
    if (seen.has(file.path)) throw malformed('duplicate_path', `files[${index}].path ${JSON.stringify(file.path)} is listed twice`, `files.${index}.path`);
    seen.add(file.path);
  }
  for (const file of files) {
    const parts = file.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const folder = parts.slice(0, i).join('/');
      if (seen.has(folder)) throw malformed('invalid_path', `"${folder}" is listed as a file and is also the folder of "${file.path}"`, 'files');
    }
  }
}

async function isFile(file: string): Promise<boolean> {
  return (await fs.lstat(file).catch(() => undefined))?.isFile() === true;
}

async function isDirectory(dir: string): Promise<boolean> {
  return (await fs.lstat(dir).catch(() => undefined))?.isDirectory() === true;
}

/** A stored file entry (`[path, sha256, size, executable]`) as the API shows it. */
function volumeFile([filePath, sha256, size, executable]: [string, string, number, boolean]): VolumeFile {
  return { path: filePath, sha256, size, executable };
}
