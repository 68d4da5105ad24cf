import { createReadStream, statSync } from 'node:fs';
import path from 'node:path';
import { CycleError, ExitCode } from '../errors.js';
import { selectFiles } from '../pack/select.js';
import { StatCache } from '../pack/stat-cache.js';
import { mapLimit } from '../util/fs.js';
import type { ApiClient } from './client.js';
import type { VolumeFile } from './schemas.js';

export interface VolumeSyncOptions {
  /** Where the digests of this folder's files are remembered between runs (none: hash every file). */
  statCacheFile?: string;
  signal?: AbortSignal;
  /** Bytes of file content sent so far, of `total` to send. */
  onProgress?: (sent: number, total: number) => void;
  /** Files that are not regular files (links to folders, sockets) and were left out. */
  onSkipped?: (path: string, why: string) => void;
  concurrency?: number;
}

export interface VolumeSyncResult {
  name: string;
  files: number;
  bytes: number;
  /** Files whose content the server lacked and that were sent (each content once). */
  sent_files: number;
  sent_bytes: number;
  /** The server already held exactly this content under this name. */
  unchanged: boolean;
}

/**
 * Uploads a folder as a volume: every file hashed (a stat cache skips unchanged ones), the server
 * asked which contents it lacks, only those sent, then the file list committed. Uploading the
 * same folder again sends no file bytes; after one file changes, only that file.
 */
export async function syncVolume(api: ApiClient, dir: string, name: string, options: VolumeSyncOptions = {}): Promise<VolumeSyncResult> {
  const selection = await selectFiles(dir, { rules: false });
  const candidates: Array<{ path: string; absolute: string }> = [];
  const cacheFile = options.statCacheFile === undefined ? undefined : path.resolve(options.statCacheFile);
  for (const entry of selection.entries) {
    // The stat cache is written by this very run: never part of a volume (a home folder upload).
    if (path.resolve(entry.absolute) === cacheFile) continue;
    if (entry.type === 'file') candidates.push({ path: entry.path, absolute: entry.absolute });
    else if (entry.type === 'symlink') {
      // A link inside the folder (selectFiles refuses one leading out) counts as the file it names.
      const target = statSync(entry.absolute, { throwIfNoEntry: false });
      if (target?.isFile()) candidates.push({ path: entry.path, absolute: entry.absolute });
      else options.onSkipped?.(entry.path, target ? 'a link to a folder' : 'a broken link');
    }
  }
  const cache = await StatCache.load(options.statCacheFile);
  const digests = await cache.digestAll(candidates);
  await cache.save().catch(() => undefined); // a cache that cannot be written only costs time next run
  const files: VolumeFile[] = candidates.map((file, index) => ({
    path: file.path,
    sha256: digests[index]!.digest,
    size: digests[index]!.size,
    executable: digests[index]!.executable,
  }));
  throwIfAborted(options.signal);

  const missing = new Set(await api.missingVolumeBlobs(name, files, options.signal));
  const toSend = new Map<string, { absolute: string; size: number }>();
  files.forEach((file, index) => {
    if (missing.has(file.sha256) && !toSend.has(file.sha256)) toSend.set(file.sha256, { absolute: candidates[index]!.absolute, size: file.size });
  });
  const total = [...toSend.values()].reduce((sum, f) => sum + f.size, 0);
  let sent = 0;
  options.onProgress?.(0, total);
  await mapLimit([...toSend.entries()], options.concurrency ?? 4, async ([sha256, file]) => {
    throwIfAborted(options.signal);
    let counted = 0;
    await api.putVolumeBlob(
      sha256,
      {
        open: () => createReadStream(file.absolute),
        length: file.size,
        contentType: 'application/octet-stream',
        onProgress: (bytes) => {
          sent += bytes - counted;
          counted = bytes;
          options.onProgress?.(sent, total);
        },
      },
      options.signal,
    );
  });
  const committed = await api.commitVolume(name, files, options.signal);
  // What the server does not say about the commit, the file list says (bytes) or leaves unknown (false: not known unchanged).
  const bytes = committed?.bytes ?? files.reduce((sum, file) => sum + file.size, 0);
  return { name, files: files.length, bytes, sent_files: toSend.size, sent_bytes: total, unchanged: committed?.unchanged === true };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted)
    throw new CycleError({
      message: 'interrupted: the volume was not changed (what was sent is kept; the next upload skips it)',
      exitCode: ExitCode.interrupted,
    });
}
