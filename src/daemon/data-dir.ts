import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CycleError, errnoCode } from '../errors.js';
import type { Env } from '../ui/streams.js';

/**
 * The daemon's data folder when `--data-dir` is not given: `$XDG_DATA_HOME/cycle/daemon`, else
 * `~/.local/share/cycle/daemon`. `cycle daemon run` and the control verbs both use it, so a verb
 * finds the daemon its user started.
 */
export function defaultDaemonDataDir(env: Env): string {
  const base = env.XDG_DATA_HOME && path.isAbsolute(env.XDG_DATA_HOME) ? env.XDG_DATA_HOME : path.join(env.HOME ?? os.homedir(), '.local', 'share');
  return path.join(base, 'cycle', 'daemon');
}

/** The files of a daemon's data folder that this room owns. */
export function daemonFiles(dataDir: string): { controlSocket: string; controlState: string; lock: string } {
  return {
    controlSocket: path.join(dataDir, 'control.sock'),
    controlState: path.join(dataDir, 'control.json'),
    lock: path.join(dataDir, 'daemon.lock'),
  };
}

/**
 * Makes the daemon's data folder owner-only (0700), creating it if needed. Refuses a folder that
 * another user owns or that is group- or world-writable: anyone who can write there could replace
 * the control socket or the control state, and so pause or steer this machine's daemon.
 */
export async function prepareDaemonDataDir(dataDir: string): Promise<void> {
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const stat = await fs.lstat(dataDir);
  if (!stat.isDirectory())
    throw new CycleError({
      message: `the daemon's data folder ${dataDir} is not a folder (a link or a file is there)`,
      hint: 'pass --data-dir with a real folder',
    });
  if (typeof process.getuid === 'function' && stat.uid !== process.getuid())
    throw new CycleError({
      message: `the daemon's data folder ${dataDir} belongs to another user (uid ${stat.uid})`,
      hint: "run the daemon as the folder's owner, or pass --data-dir with a folder of your own",
    });
  if ((stat.mode & 0o022) !== 0)
    throw new CycleError({
      message: `the daemon's data folder ${dataDir} is writable by others (mode ${(stat.mode & 0o777).toString(8).padStart(4, '0')}): anyone who can write there could steer this daemon`,
      hint: `make it owner-only: chmod 700 ${dataDir}`,
    });
  if ((stat.mode & 0o077) !== 0) {
    try {
      await fs.chmod(dataDir, 0o700);
    } catch (error) {
      throw new CycleError({
        message: `cannot make the daemon's data folder ${dataDir} owner-only: ${errnoCode(error) ?? String(error)}`,
        hint: `chmod 700 ${dataDir}`,
      });
    }
  }
}
