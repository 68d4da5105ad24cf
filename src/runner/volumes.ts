import fs from 'node:fs/promises';
import path from 'node:path';
import { CycleError, ExitCode, usageError } from '../errors.js';
import type { Mount } from '../docker/driver.js';
import { statePaths } from '../project/state.js';
import { MANIFEST_VOLUME_PATTERN } from '../project/names.js';

/**
 * Where a `[main].volumes` entry is mounted in a job container: `/volumes/<name>`, and a
 * platform volume `builtin/<name>` at `/volumes/builtin/<name>`.
 */
export function volumeMountPath(volume: string): string {
  return `/volumes/${volume}`;
}

/**
 * Host folders for the manifest's volumes, mounted at volumeMountPath(name): `--volume NAME=PATH`,
 * else `<project>/.cycle/volumes/<name>` (`.cycle/volumes/builtin/<name>` for a platform volume).
 * A missing folder is an error that names it.
 */
export async function resolveVolumes(root: string, declared: readonly string[], flags: readonly string[], cwd: string): Promise<Mount[]> {
  const given = new Map<string, string>();
  for (const flag of flags) {
    const eq = flag.indexOf('=');
    if (eq <= 0) throw usageError(`--volume ${flag}: expected NAME=PATH`, `e.g. --volume training-data=/data/train`);
    const name = flag.slice(0, eq);
    if (!MANIFEST_VOLUME_PATTERN.test(name)) throw usageError(`--volume ${flag}: "${name}" is not a volume name`);
    if (!declared.includes(name)) {
      throw usageError(
        `--volume ${name}: the manifest declares no volume "${name}"`,
        declared.length ? `declared volumes: ${declared.join(', ')}` : `add it to [main].volumes in .cycleswap/manifest.toml`,
      );
    }
    given.set(name, path.resolve(cwd, flag.slice(eq + 1)));
  }
  const mounts: Mount[] = [];
  for (const name of declared) {
    const source = given.get(name) ?? path.join(statePaths.volumes(root), name);
    const stat = await fs.stat(source).catch(() => undefined);
    if (!stat?.isDirectory()) {
      throw new CycleError({
        message: `volume "${name}" has no local folder: ${source} ${stat ? 'is not a folder' : 'does not exist'}`,
        hint: `create ${path.relative(cwd, path.join(statePaths.volumes(root), name)) || '.'} with the data, or pass --volume ${name}=/path/to/data`,
        exitCode: ExitCode.usage,
      });
    }
    // Read-only, as on the platforms: a job writes its output to /artifacts.
    mounts.push({ type: 'bind', source: await fs.realpath(source), target: volumeMountPath(name), readonly: true });
  }
  return mounts;
}
