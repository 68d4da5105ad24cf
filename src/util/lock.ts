import fs from 'node:fs/promises';
import path from 'node:path';
import { CycleError, errnoCode } from '../errors.js';

/** Lock files this process holds (a lock file with this pid is stale unless listed). */
const heldHere = new Set<string>();

/**
 * Takes a folder's lock file (holding this process's pid): while its process lives, a second
 * taker gets `alreadyHeld(pid)`'s error. A lock whose process is gone (a `kill -9`) is stale and
 * taken over. Returns the release. Used by `cycle server` (`server.lock`) and `cycle daemon run`
 * (`daemon.lock`): one process per data folder.
 */
export async function takeLockFile(file: string, alreadyHeld: (pid: number) => CycleError): Promise<() => Promise<void>> {
  const key = path.resolve(file);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fs.writeFile(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      heldHere.add(key);
      let released = false;
      return async () => {
        if (released) return;
        released = true;
        heldHere.delete(key);
        await fs.rm(file, { force: true });
      };
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') throw error;
    }
    const pid = Number((await fs.readFile(file, 'utf8').catch(() => '')).trim());
    const held = Number.isInteger(pid) && pid > 0 && (pid === process.pid ? heldHere.has(key) : processAlive(pid));
    if (held) throw alreadyHeld(pid);
    await fs.rm(file, { force: true }); // stale: its process is gone
  }
  throw new CycleError({ message: `could not take the lock ${file}: another process keeps taking it`, hint: 'start one process per data folder' });
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errnoCode(error) === 'EPERM'; // alive, another user's
  }
}
