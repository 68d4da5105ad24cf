import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '../context.js';
import { CycleError, ExitCode, usageError } from '../errors.js';
import { syncVolume } from '../api/volume-sync.js';
import { VOLUME_NAME_PATTERN } from '../project/names.js';
import { formatBytes, formatTable, transferLine } from '../ui/ui.js';
import type { ListOptions, RmOptions, UploadOptions } from './volume.command.js';

const VOLUME_NAME_RULE = '1-63 characters: lowercase letters, digits, ".", "_" or "-", starting with a letter or digit';

export async function upload(options: UploadOptions, ctx: Context): Promise<number> {
  const dir = path.resolve(ctx.cwd, options.dir);
  const stat = await fs.stat(dir).catch(() => undefined);
  if (!stat?.isDirectory())
    throw usageError(
      `${options.dir}: ${stat ? 'is not a folder' : 'no such folder'}`,
      'give the folder to upload, e.g. cycle volume upload ./data --name training-data',
    );
  const name = options.name ?? path.basename(dir);
  if (!VOLUME_NAME_PATTERN.test(name)) {
    throw usageError(
      options.name === undefined ? `the folder's name "${name}" is not a volume name (${VOLUME_NAME_RULE})` : `--name ${name}: expected ${VOLUME_NAME_RULE}`,
      `pass --name with the name your manifest's [main].volumes uses, e.g. --name training-data`,
    );
  }
  const real = await fs.realpath(dir);
  const api = await ctx.api(options);
  const started = ctx.clock.now();
  const result = await syncVolume(api, dir, name, {
    // Kept per folder in cycle's data folder: nothing is written into the data itself.
    statCacheFile: path.join(ctx.dataDir, 'volume-stat-cache', `${createHash('sha256').update(real).digest('hex').slice(0, 32)}.bin`),
    signal: ctx.signal,
    onProgress: (sent, total) => {
      if (total > 0) ctx.ui.live(`uploading ${name}: ${transferLine(sent, total, ctx.clock.now() - started)}`);
    },
    onSkipped: (file, why) => ctx.ui.warn(`${file} is ${why}: left out of the volume`),
  });
  ctx.ui.clearLive();
  if (options.json) ctx.ui.json(result);
  else {
    const sentText =
      result.sent_files === 0
        ? 'no file content sent (the backend had it all)'
        : `sent ${result.sent_files} file${result.sent_files === 1 ? '' : 's'} (${formatBytes(result.sent_bytes)})`;
    ctx.ui.success(`volume ${name}: ${result.files} files, ${formatBytes(result.bytes)}; ${sentText}${result.unchanged ? '; unchanged' : ''}`);
    ctx.ui.out(name);
  }
  return ExitCode.ok;
}

export async function list(options: ListOptions, ctx: Context): Promise<number> {
  const api = await ctx.api(options);
  const volumes = await api.listVolumes();
  if (options.json) ctx.ui.json(volumes);
  else if (volumes.length === 0) ctx.ui.info('no volumes (upload one: cycle volume upload DIR --name NAME)');
  else if (!ctx.io.stdout.isTTY) for (const v of volumes) ctx.ui.out(`${v.name}\t${v.files ?? '-'}\t${v.bytes ?? '-'}\t${v.updated_at ?? '-'}`);
  else
    ctx.ui.out(
      formatTable(
        ['VOLUME', 'FILES', 'SIZE', 'UPDATED'],
        volumes.map((v) => [
          v.name,
          String(v.files ?? '-'),
          typeof v.bytes === 'number' ? formatBytes(v.bytes) : '-',
          v.updated_at ? v.updated_at.replace('T', ' ').slice(0, 19) : '-',
        ]),
      ),
    );
  return ExitCode.ok;
}

export async function rm(options: RmOptions, ctx: Context): Promise<number> {
  if (!VOLUME_NAME_PATTERN.test(options.name))
    throw usageError(`invalid volume name "${options.name}": expected ${VOLUME_NAME_RULE}`, 'see the names with: cycle volume list');
  const api = await ctx.api(options);
  const removed = await api.removeVolume(options.name).catch((error: unknown) => {
    if (error instanceof CycleError && 'status' in error && error.status === 404)
      throw new CycleError({
        message: `no volume "${options.name}" on the backend`,
        hint: 'see the names with: cycle volume list',
        exitCode: ExitCode.failure,
      });
    throw error;
  });
  if (options.json) ctx.ui.json(removed ?? { name: options.name, removed: true });
  else ctx.ui.success(`removed volume ${options.name}`);
  return ExitCode.ok;
}
