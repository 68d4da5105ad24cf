import { randomBytes } from 'node:crypto';
import { constants as fsConstants, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { ArtifactOrder } from '../project/cycleswap.js';
import { joinInside } from '../util/paths.js';

/** Where a job writes its artifacts inside the container (the real platform's path). */
export const ARTIFACTS_DIR = '/artifacts';
/** A file is taken once its size and modification time have not changed for this long. */
export const STABLE_MS = 500;
/** How often the artifacts folder is scanned while the job runs. */
export const POLL_MS = 200;

export interface CapturedArtifact {
  /** POSIX path relative to the artifacts folder. */
  path: string;
  /** The captured copy in the store. */
  absolute: string;
  size: number;
  /** Order first written (FIFO sorts by it). */
  firstSeen: number;
  /** Order of the latest capture. */
  lastCaptured: number;
  /** Modification time of the captured version, in nanoseconds (LIFO sorts newest first by it). */
  mtimeNs: bigint;
  /**
   * The file's place in upload order as a sort key (ascending; not dense): FIFO the order first
   * written, LIFO the newest modification first. Known from the file alone, so a store keeps
   * one row per capture and never renumbers the others.
   */
  uploadKey: number;
}

/** `CapturedArtifact.uploadKey`: FIFO by first written; LIFO newest first (microseconds, exact in a double). */
export function uploadKey(order: ArtifactOrder, firstSeen: number, mtimeNs: bigint): number {
  return order === 'FIFO' ? firstSeen : -Number(mtimeNs / 1000n);
}

export interface ArtifactCaptureOptions {
  /** The host folder mounted at /artifacts, which the job controls. */
  liveDir: string;
  /** Where captured copies go, by relative path (the newest version wins). */
  storeDir: string;
  order: ArtifactOrder;
  /** Each capture (one file: its `uploadKey` places it among the others). */
  onCaptured?: (artifact: CapturedArtifact) => void | Promise<void>;
  /** A path that is not a regular file (a link, a FIFO…): never followed, reported once. */
  onRefused?: (relative: string, why: string) => void;
  stableMs?: number;
  /**
   * The most bytes the captured files may take together, each counted at the larger of its
   * apparent size and its allocated blocks: a sparse file of a terabyte counts a terabyte (its
   * copy would write every byte). A file that would go over is refused, not copied.
   */
  maxBytes?: number;
}

interface Tracked {
  size: bigint;
  mtimeNs: bigint;
  /** When (the capture's clock) the size or mtime last changed. */
  changedAt: number;
  firstSeen: number;
  /** `size:mtime` of the version captured last. */
  capturedSignature?: string;
}

/**
 * Takes the files a job writes under /artifacts while it runs: a file is copied once it has been
 * unchanged for 500 ms, again when it is rewritten, and its copy stays when the job deletes it.
 * Files go one at a time in the upload order (FIFO: order first written; LIFO: newest first).
 * The folder is the job's: links and special files are refused, never followed, and a file is
 * copied from a descriptor opened without following links, checked to lie inside the folder.
 * `poll(now)` is one scan (a test drives it with its own clock); `start` polls on a timer.
 */
export class ArtifactCapture {
  private readonly tracked = new Map<string, Tracked>();
  private readonly captured = new Map<string, CapturedArtifact>();
  private readonly refused = new Set<string>();
  private sequence = 0;
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> = Promise.resolve();
  private stopped = false;
  /** Set by `abort`: a scan or a copy in progress ends at the next file. */
  private aborted = false;
  private finished: Promise<void> | undefined;
  /** The first failure of a live scan (an `onCaptured` that threw: the server unreachable): told by `stop`. */
  private failure: unknown;
  private readonly stableMs: number;
  /** What each captured file counts against `maxBytes`, and their sum. */
  private readonly charged = new Map<string, number>();
  private chargedTotal = 0;

  constructor(private readonly options: ArtifactCaptureOptions) {
    this.stableMs = options.stableMs ?? STABLE_MS;
  }

  /**
   * Puts the files of an earlier store (a previous attempt's, a previous run's) into the live
   * folder before the job starts, counted as captured: the job resumes from them. They are also
   * copied into this capture's store when it is another folder.
   */
  async resumeFrom(previousStore: string): Promise<void> {
    for (const relative of await listFiles(previousStore)) {
      const source = joinInside(previousStore, ...relative.split('/'));
      const live = joinInside(this.options.liveDir, ...relative.split('/'));
      await fs.mkdir(path.dirname(live), { recursive: true });
      await fs.copyFile(source, live);
      const stored = joinInside(this.options.storeDir, ...relative.split('/'));
      if (path.resolve(stored) !== path.resolve(source)) {
        await fs.mkdir(path.dirname(stored), { recursive: true });
        await fs.copyFile(source, stored);
      }
      const stat = await fs.lstat(live, { bigint: true });
      const seq = this.sequence++;
      this.tracked.set(relative, {
        size: stat.size,
        mtimeNs: stat.mtimeNs,
        changedAt: -Infinity,
        firstSeen: seq,
        capturedSignature: `${stat.size}:${stat.mtimeNs}`,
      });
      this.captured.set(relative, {
        path: relative,
        absolute: stored,
        size: Number(stat.size),
        firstSeen: seq,
        lastCaptured: seq,
        mtimeNs: stat.mtimeNs,
        uploadKey: uploadKey(this.options.order, seq, stat.mtimeNs),
      });
    }
  }

  /** Scans the live folder every POLL_MS until `stop`. */
  start(intervalMs = POLL_MS): void {
    const tick = (): void => {
      this.timer = undefined;
      if (this.stopped) return;
      // A failed scan is kept for `stop`, not left unhandled (that would end the process), and polling goes on.
      this.polling = this.poll(Date.now())
        .catch((error: unknown) => {
          this.failure ??= error;
        })
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, intervalMs);
        });
    };
    tick();
  }

  /** Stops polling; then takes whatever changed since its last capture, without waiting. */
  stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.finished ??= this.polling
      .catch(() => undefined)
      .then(() => (this.aborted ? undefined : this.poll(Date.now(), { final: true })))
      .then(() => {
        if (this.failure !== undefined) throw this.failure;
      });
    return this.finished;
  }

  /**
   * Stops at once (a cancel): no last sweep, and a scan or copy in progress ends at the next file,
   * so a job that wrote thousands of files leaves no capture running after it. Resolves when
   * the capture in progress has stopped.
   */
  abort(): Promise<void> {
    this.aborted = true;
    // A cancel: a capture that could not be delivered is not the task's outcome any more.
    return this.stop().catch(() => undefined);
  }

  /** One scan at time `now`: notes changes, then captures the files stable for STABLE_MS (all changed ones when `final`). */
  async poll(now: number, { final = false } = {}): Promise<void> {
    const seen: Array<{ relative: string; mtimeNs: bigint }> = [];
    await this.scan('', now, seen);
    // Files that appear in the same scan count as written in mtime order (then by path).
    seen.sort((a, b) => (a.mtimeNs === b.mtimeNs ? compare(a.relative, b.relative) : a.mtimeNs < b.mtimeNs ? -1 : 1));
    for (const { relative } of seen) this.tracked.get(relative)!.firstSeen = this.sequence++;
    const ready = [...this.tracked.entries()].filter(
      ([, t]) => (final || now - t.changedAt >= this.stableMs) && t.capturedSignature !== `${t.size}:${t.mtimeNs}`,
    );
    ready.sort(([a, ta], [b, tb]) =>
      this.options.order === 'LIFO' ? (ta.mtimeNs === tb.mtimeNs ? compare(a, b) : ta.mtimeNs > tb.mtimeNs ? -1 : 1) : ta.firstSeen - tb.firstSeen,
    );
    for (const [relative] of ready) {
      if (this.aborted) return;
      await this.take(relative);
    }
  }

  /** Every captured file, in upload order (FIFO: first written first; LIFO: newest version first). */
  list(): CapturedArtifact[] {
    const all = [...this.captured.values()];
    if (this.options.order === 'FIFO') return all.sort((a, b) => a.firstSeen - b.firstSeen);
    return all.sort((a, b) => (a.mtimeNs === b.mtimeNs ? b.lastCaptured - a.lastCaptured : a.mtimeNs > b.mtimeNs ? -1 : 1));
  }

  private async scan(relative: string, now: number, seen: Array<{ relative: string; mtimeNs: bigint }>): Promise<void> {
    const dir = relative ? joinInside(this.options.liveDir, ...relative.split('/')) : this.options.liveDir;
    const entries = await fs.readdir(dir).catch(() => []);
    for (const name of entries) {
      if (this.aborted) return;
      const rel = relative ? `${relative}/${name}` : name;
      const stat = await fs.lstat(path.join(dir, name), { bigint: true }).catch(() => undefined);
      if (!stat) continue; // deleted meanwhile: what was captured stays
      if (stat.isDirectory()) await this.scan(rel, now, seen);
      else if (stat.isFile()) {
        const known = this.tracked.get(rel);
        if (!known) {
          this.tracked.set(rel, { size: stat.size, mtimeNs: stat.mtimeNs, changedAt: now, firstSeen: -1 });
          seen.push({ relative: rel, mtimeNs: stat.mtimeNs });
        } else if (known.size !== stat.size || known.mtimeNs !== stat.mtimeNs) {
          Object.assign(known, { size: stat.size, mtimeNs: stat.mtimeNs, changedAt: now });
        }
      } else this.refuse(rel, stat.isSymbolicLink() ? 'a symbolic link (write the file itself)' : 'not a regular file');
    }
  }

  private refuse(relative: string, why: string): void {
    if (this.refused.has(relative)) return;
    this.refused.add(relative);
    this.options.onRefused?.(relative, why);
  }

  /** Copies one file into the store (a temporary name, then a rename: a reader never sees half a file). */
  private async take(relative: string): Promise<void> {
    const tracked = this.tracked.get(relative)!;
    const live = joinInside(this.options.liveDir, ...relative.split('/'));
    let handle: fs.FileHandle;
    try {
      handle = await fs.open(live, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ELOOP' || code === 'EMLINK') this.refuse(relative, 'a symbolic link (write the file itself)');
      return; // gone, or not readable yet: a later scan decides
    }
    const stored = joinInside(this.options.storeDir, ...relative.split('/'));
    const temporary = path.join(path.dirname(this.options.storeDir), `.capture-${randomBytes(6).toString('hex')}`);
    try {
      const stat = await handle.stat({ bigint: true });
      if (!stat.isFile()) return this.refuse(relative, 'not a regular file');
      // O_NOFOLLOW guards the last name only: a folder on the way may have become a link.
      const opened = await fs.readlink(`/proc/self/fd/${handle.fd}`).catch(() => undefined);
      if (opened !== undefined && !opened.startsWith(path.resolve(this.options.liveDir) + path.sep))
        return this.refuse(relative, 'it leads outside the artifacts folder');
      const charge = Math.max(Number(stat.size), Number(stat.blocks) * 512);
      const others = this.chargedTotal - (this.charged.get(relative) ?? 0);
      if (this.options.maxBytes !== undefined && others + charge > this.options.maxBytes) {
        tracked.capturedSignature = `${stat.size}:${stat.mtimeNs}`; // not tried again until it changes
        return this.refuse(
          relative,
          `it would take the task's artifacts over ${this.options.maxBytes} bytes (it counts ${charge}: its size ${stat.size}, allocated ${Number(stat.blocks) * 512}; captured so far ${others})`,
        );
      }
      await fs.mkdir(path.dirname(stored), { recursive: true });
      // Streamed from the descriptor (a GiB checkpoint is never held in memory), no further than
      // the size counted: a file still growing is taken again once it is stable.
      const source = stat.size === 0n ? [] : handle.createReadStream({ autoClose: false, start: 0, end: Number(stat.size) - 1 });
      await pipeline(source, createWriteStream(temporary, { flags: 'wx' }));
      this.charged.set(relative, charge);
      this.chargedTotal = others + charge;
      await fs.rename(temporary, stored);
      tracked.capturedSignature = `${stat.size}:${stat.mtimeNs}`;
      const previous = this.captured.get(relative);
      const artifact: CapturedArtifact = {
        path: relative,
        absolute: stored,
        size: Number(stat.size),
        firstSeen: previous?.firstSeen ?? tracked.firstSeen,
        lastCaptured: this.sequence++,
        mtimeNs: stat.mtimeNs,
        uploadKey: uploadKey(this.options.order, previous?.firstSeen ?? tracked.firstSeen, stat.mtimeNs),
      };
      this.captured.set(relative, artifact);
      if (this.aborted) return;
      await this.options.onCaptured?.(artifact);
    } finally {
      await handle.close();
      await fs.rm(temporary, { force: true });
    }
  }
}

/** The regular files under `dir` (POSIX relative paths); links and special files are skipped. */
export async function listFiles(dir: string, relative = ''): Promise<string[]> {
  const files: string[] = [];
  const here = relative ? path.join(dir, ...relative.split('/')) : dir;
  for (const entry of await fs.readdir(here, { withFileTypes: true }).catch(() => [])) {
    const rel = relative ? `${relative}/${entry.name}` : entry.name;
    if (entry.isDirectory()) files.push(...(await listFiles(dir, rel)));
    else if (entry.isFile()) files.push(rel);
  }
  return files.sort(compare);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
