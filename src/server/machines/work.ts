import fs from 'node:fs/promises';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { z } from 'zod';
import type { MachineInventory } from '../../api/machines.js';
import {
  MAX_LEASE_WAIT_MS,
  type capturedQuerySchema,
  type completeRequestSchema,
  type HeartbeatRequest,
  type reportRequestSchema,
  type WireLease,
} from '../../api/machine-protocol.js';
import { BUILTIN_VOLUME_PREFIX } from '../../project/names.js';
import { joinInside } from '../../util/paths.js';
import type { DB } from '../db.js';
import { DomainError, invalid, notFound, tooLarge } from '../errors.js';
import type { JobService } from '../jobs.js';
import type { Layout } from '../layout.js';
import type { ProjectService } from '../projects.js';
import { receiveBody } from '../receive.js';
import type { VolumeService } from '../volumes.js';
import { LEASES_AHEAD, StaleLease, type Lease, type WorkerOffer } from '../queue/lease.js';
import type { WorkQueue } from '../queue/work-queue.js';
import type { MachineAuth } from './auth.js';

/** The caller of a machine route, as the router authenticated it. */
export type MachineCaller = { tokenId: string; name: string | undefined };

export interface MachineWorkOptions {
  auth: MachineAuth;
  queue: Pick<WorkQueue, 'lease' | 'renew' | 'report' | 'complete' | 'release' | 'awaitTurn' | 'holder' | 'leasesOf' | 'msLeft'>;
  jobs: Pick<JobService, 'artifact'>;
  projects: Pick<ProjectService, 'revision' | 'load'>;
  volumes: Pick<VolumeService, 'files'>;
  db: DB;
  layout: Layout;
  version: string;
  /** How long a lease lives unrenewed (told to the daemon at its heartbeat). */
  leaseMs: number;
  /** The cap on what one task's captured artifacts take on the server (as for the in-process worker). */
  maxTaskArtifactBytes: number;
}

/**
 * The work queue as enrolled machines see it (`cycle daemon run`): their heartbeat (what they
 * offer), a long poll for leases, and calls on their own leases only; the inputs of the leases
 * they hold now, and their captured artifacts' bytes. Everything a machine sends is untrusted:
 * a lease that is not the caller's is answered as stale, paths stay inside the task's folder,
 * sizes are capped. Speaks the domain (DomainError); the routes are http/daemon-routes.ts.
 */
export class MachineWork {
  /** Each machine's last heartbeat: what the queue places by. */
  private readonly offers = new Map<string, { inventory: MachineInventory; slots: number }>();

  constructor(private readonly options: MachineWorkOptions) {}

  heartbeat(caller: MachineCaller, request: HeartbeatRequest): { name: string; lease_ms: number; server_version: string; draining: boolean } {
    const name = this.options.auth.heartbeat(caller.tokenId, request.name, request.inventory, request.activity, request.slots);
    this.offers.set(name, { inventory: request.inventory, slots: request.slots });
    return { name, lease_ms: this.options.leaseMs, server_version: this.options.version, draining: this.options.auth.draining(name) };
  }

  /**
   * Up to `max` leases for the machine: at once when there is work, else when the queue says
   * there may be some, within `waitMs` (at most MAX_LEASE_WAIT_MS). Leases made for a machine
   * that went away meanwhile (`signal`) are given back at once.
   */
  async lease(caller: MachineCaller, max: number, waitMs: number, signal: AbortSignal): Promise<{ leases: WireLease[]; not_offered?: string }> {
    const name = this.enrolled(caller);
    const known = this.offers.get(name);
    if (!known) throw new DomainError('conflict', 'no_heartbeat', `machine ${name} has sent no heartbeat since the server started: send one first`);
    const offer: WorkerOffer = { workerId: name, gpu: gpuOf(known.inventory), machine: { name, inventory: known.inventory } };
    const deadline = Date.now() + Math.min(waitMs, MAX_LEASE_WAIT_MS);
    // Its slots, and the task its worker prepares ahead (LEASES_AHEAD); the queue counts what it holds already.
    const count = Math.min(max, known.slots + LEASES_AHEAD);
    for (;;) {
      const may = this.options.auth.mayTakeWork(name);
      // In line for work before asking (a wake while the request runs is kept); the queue wakes
      // the line one by one while there is work, not every machine at every finished task.
      const turn = may.ok ? this.options.queue.awaitTurn(name) : undefined;
      let again = false;
      try {
        if (may.ok) {
          const leases = await this.options.queue.lease(offer, count);
          if (signal.aborted) {
            for (const lease of leases)
              await this.options.queue.release(lease.id, `machine ${name} went away before it got the lease`, { unstarted: true }).catch(() => undefined);
            return { leases: [] };
          }
          if (leases.length) {
            for (const lease of leases) await this.noteVolumes(lease.project, lease.revision);
            return { leases: leases.map((lease) => this.wire(lease)) };
          }
        }
        const left = deadline - Date.now();
        if (left <= 0 || signal.aborted) return { leases: [], ...(may.ok ? {} : { not_offered: may.reason }) };
        // A refused machine waits out the poll: asking again at once would only spin.
        if (!turn?.isWoken())
          await new Promise<void>((resolve) => {
            const timer = setTimeout(done, left);
            function done(): void {
              clearTimeout(timer);
              signal.removeEventListener('abort', done);
              resolve();
            }
            turn?.woken.then(done);
            signal.addEventListener('abort', done, { once: true });
          });
        again = !signal.aborted && Date.now() < deadline && this.options.auth.mayTakeWork(name).ok;
      } finally {
        turn?.end(again);
      }
    }
  }

  async renew(caller: MachineCaller, leaseId: string): Promise<{ expires_in_ms: number; cancel: boolean }> {
    this.own(caller, leaseId);
    const { expiresAt, cancel } = await asStale(this.options.queue.renew(leaseId));
    return { expires_in_ms: this.options.queue.msLeft(expiresAt), cancel };
  }

  async report(caller: MachineCaller, leaseId: string, batch: z.infer<typeof reportRequestSchema>): Promise<void> {
    this.own(caller, leaseId);
    await asStale(
      this.options.queue.report(leaseId, {
        ...(batch.output !== undefined ? { output: batch.output } : {}),
        ...(batch.progress !== undefined ? { progress: batch.progress } : {}),
        ...(batch.progress_points !== undefined ? { progressPoints: batch.progress_points } : {}),
      }),
    );
  }

  async complete(caller: MachineCaller, leaseId: string, outcome: z.infer<typeof completeRequestSchema>): Promise<void> {
    this.own(caller, leaseId);
    await asStale(
      this.options.queue.complete(leaseId, {
        status: outcome.status,
        ...(outcome.result !== undefined ? { result: outcome.result } : {}),
        ...(outcome.error !== undefined ? { error: outcome.error } : {}),
        ...(outcome.exit_code !== undefined ? { exitCode: outcome.exit_code } : {}),
        ...(outcome.stages !== undefined ? { stages: outcome.stages } : {}),
      }),
    );
  }

  async release(caller: MachineCaller, leaseId: string, reason: string, unstarted = false): Promise<void> {
    const { machine } = this.own(caller, leaseId);
    await asStale(this.options.queue.release(leaseId, `machine ${machine}: ${reason}`, { unstarted }));
  }

  /**
   * A file the task captured under /artifacts, its bytes first (the remote form of a
   * LeaseReport's `artifact`): stored in the task's folder on the server, as the in-process
   * worker's capture would be, then recorded. The path stays inside; the task's files together
   * stay under the cap.
   */
  async captured(
    caller: MachineCaller,
    leaseId: string,
    file: z.infer<typeof capturedQuerySchema>,
    body: Readable,
    declared: number,
  ): Promise<{ path: string; size: number }> {
    const lease = this.own(caller, leaseId);
    const relative = checkedRelative(file.path);
    const { db, layout, maxTaskArtifactBytes } = this.options;
    const store = layout.taskOutputs(lease.jobId, lease.taskId);
    const target = joinInside(store, ...relative.split('/'));
    const others = (
      db.prepare('SELECT COALESCE(SUM(size), 0) AS bytes FROM artifacts WHERE task_id = ? AND name != ?').get(lease.taskId, relative) as { bytes: number }
    ).bytes;
    const room = maxTaskArtifactBytes - others;
    const refusal = `the task's captured artifacts would take more than ${maxTaskArtifactBytes} bytes (the server's per-task cap): /artifacts/${relative} is not stored`;
    if (declared > room) throw tooLarge('artifacts_over_cap', refusal);
    await fs.mkdir(layout.tmp, { recursive: true });
    const upload = path.join(layout.tmp, `captured-${randomBytes(6).toString('hex')}`);
    try {
      const { size } = await receiveBody(body, upload, { maxBytes: Math.max(0, room), tooLarge: refusal, mode: 0o600 });
      try {
        await fs.mkdir(path.dirname(target), { recursive: true });
        await fs.rename(upload, target);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOTDIR' || code === 'EISDIR' || code === 'EEXIST')
          throw invalid(
            'artifact_path_conflict',
            `/artifacts/${relative} conflicts with another captured file of the task (a file where a folder is, or the reverse)`,
            'path',
          );
        throw error;
      }
      await asStale(
        this.options.queue.report(leaseId, {
          artifact: {
            captured: {
              path: relative,
              absolute: target,
              size,
              firstSeen: file.first_seen,
              lastCaptured: file.last_captured,
              mtimeNs: BigInt(file.mtime_ns),
              uploadKey: file.upload_key,
            },
          },
        }),
      );
      return { path: relative, size };
    } finally {
      await fs.rm(upload, { force: true });
    }
  }

  /** A revision's stored push (content-addressed), for a machine that holds a lease of it. */
  revision(caller: MachineCaller, project: string, number: number): { content_hash: string; format: string; tarball: string } {
    const name = this.enrolled(caller);
    if (!this.options.queue.leasesOf(name).some((l) => l.project === project && l.revision === number))
      throw notFound(`machine ${name} holds no lease of ${project} revision ${number}`, 'revision');
    const row = this.options.projects.revision(project, number);
    if (!row) throw notFound(`no revision ${number} of ${project}`, 'revision');
    return { content_hash: row.content_hash, format: row.format, tarball: this.options.layout.tarball(row.content_hash) };
  }

  /** An `_artifacts.download` file of a lease the machine holds. */
  download(caller: MachineCaller, artifactId: string): { path: string; sha256: string; name: string } {
    const name = this.enrolled(caller);
    if (!this.options.queue.leasesOf(name).some((l) => l.downloads.some((d) => d.artifactId === artifactId)))
      throw notFound(`machine ${name} holds no lease that downloads artifact ${artifactId}`, 'artifact');
    const artifact = this.options.jobs.artifact(artifactId);
    return { path: artifact.path, sha256: artifact.sha256, name: artifact.name };
  }

  /** What a task it holds captured so far (put back before the task runs on this machine). */
  capturedList(caller: MachineCaller, taskId: string): Array<{ id: string; path: string; size: number; sha256: string; stored: string }> {
    const name = this.enrolled(caller);
    if (!this.options.queue.leasesOf(name).some((l) => l.taskId === taskId)) throw notFound(`machine ${name} holds no lease of task ${taskId}`, 'task');
    const rows = this.options.db.prepare('SELECT id, name, size, sha256, path FROM artifacts WHERE task_id = ? ORDER BY ord').all(taskId) as Array<{
      id: string;
      name: string;
      size: number;
      sha256: string;
      path: string;
    }>;
    return rows.map((r) => ({ id: r.id, path: r.name, size: r.size, sha256: r.sha256, stored: r.path }));
  }

  /** A volume a project it holds a lease of links: its files by content (builtin/ ones are the machine's own folder). */
  volume(
    caller: MachineCaller,
    volume: string,
  ): { name: string; builtin: boolean; version: string | null; files: Array<{ path: string; sha256: string; size: number; executable: boolean }> } {
    this.requireVolumeLease(caller, volume);
    if (volume.startsWith(BUILTIN_VOLUME_PREFIX)) return { name: volume, builtin: true, version: null, files: [] };
    const row = this.options.db.prepare('SELECT version FROM volumes WHERE name = ?').get(volume) as { version: string } | undefined;
    if (!row) throw notFound(`no volume ${volume}`, 'volume');
    return { name: volume, builtin: false, version: row.version, files: this.options.volumes.files(volume) };
  }

  /** One file of such a volume, by its content hash. */
  volumeBlob(caller: MachineCaller, volume: string, sha256: string): string {
    const { files } = this.volume(caller, volume);
    if (!files.some((f) => f.sha256 === sha256)) throw notFound(`volume ${volume} has no file with sha256 ${sha256}`, 'sha256');
    return this.options.layout.volumeBlob(sha256);
  }

  private requireVolumeLease(caller: MachineCaller, volume: string): void {
    const name = this.enrolled(caller);
    for (const lease of this.options.queue.leasesOf(name)) {
      // Loaded (and cached) when the lease was made: no I/O here in the usual case.
      const linked = this.linkedVolumes.get(`${lease.project}@${lease.revision}`);
      if (linked?.includes(volume)) return;
    }
    throw notFound(`machine ${name} holds no lease of a project that links volume ${volume}`, 'volume');
  }

  /** The volumes each leased revision links, noted when its lease goes out. */
  private readonly linkedVolumes = new Map<string, readonly string[]>();

  /** The lease as the machine gets it: its expiry as a duration. */
  private wire(lease: Lease): WireLease {
    const { expiresAt, ...rest } = lease;
    return { ...rest, expires_in_ms: this.options.queue.msLeft(expiresAt) } as WireLease;
  }

  private async noteVolumes(project: string, revision: number): Promise<void> {
    const key = `${project}@${revision}`;
    if (this.linkedVolumes.has(key)) return;
    const loaded = await this.options.projects.load(project, revision).catch(() => undefined);
    this.linkedVolumes.set(key, loaded?.format === 'cycleswap' ? loaded.manifest.main.volumes : []);
  }

  /** The machine's name; a token that never sent a heartbeat has none yet. */
  private enrolled(caller: MachineCaller): string {
    if (caller.name === undefined)
      throw new DomainError('conflict', 'not_enrolled', 'this machine token has not enrolled a machine yet: send a heartbeat first');
    return caller.name;
  }

  /** The lease, when the calling machine holds it now; else stale (409), whoever holds it. */
  private own(caller: MachineCaller, leaseId: string): Lease & { machine: string } {
    const name = this.enrolled(caller);
    const lease = this.options.queue.leasesOf(name).find((l) => l.id === leaseId);
    if (!lease)
      throw staleLease(new StaleLease(leaseId, `it is not held by machine ${name} (it expired, was given back or revoked, or its task has an outcome)`));
    return { ...lease, machine: name };
  }
}

/** A stale lease as the machine routes answer it: 409 `stale_lease` (the daemon's client maps it back to StaleLease). */
export function staleLease(error: StaleLease): DomainError {
  return new DomainError('conflict', 'stale_lease', error.message, 'lease');
}

/** A queue call that found the lease gone meanwhile: answered as stale too. */
async function asStale<T>(call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (error) {
    throw error instanceof StaleLease ? staleLease(error) : error;
  }
}

/** What a machine's inventory offers today's GPU rule (`WorkQueue`'s gpuProblem). */
function gpuOf(inventory: MachineInventory): WorkerOffer['gpu'] {
  if (inventory.gpus.length === 0) return { ok: false, reason: inventory.gpu_problem ?? 'the machine has no GPU' };
  if (inventory.gpu_problem) return { ok: false, reason: inventory.gpu_problem };
  return { ok: true, ...(inventory.cuda ? { cuda: inventory.cuda } : {}) };
}

/** A captured file's path as a machine sends it: relative, POSIX, every step a plain name. */
function checkedRelative(text: string): string {
  const parts = text.split('/');
  if (text.startsWith('/') || parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\0')))
    throw invalid(
      'invalid_artifact_path',
      `the captured file's path ${JSON.stringify(text.slice(0, 200))} must be relative to /artifacts, with no empty, "." or ".." step`,
      'path',
    );
  return parts.join('/');
}
