import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import type { Project } from '../../project/load.js';
import { selectFiles, toTarEntries } from '../../pack/select.js';
import type { TarEntry } from '../../pack/tar.js';
import type { DB } from '../db.js';
import type { JobService } from '../jobs.js';
import type { Layout } from '../layout.js';
import type { TreeLimits } from '../limits.js';
import type { ProjectService } from '../projects.js';
import { volumeMountSource } from '../volumes.js';

/**
 * What a worker fetches to run a lease, behind one interface: in-process it reads the server's
 * own data folder; a worker on another machine will fetch the same over HTTP.
 */
export interface TaskInputs {
  /** The project at a revision (its files unpacked where the worker runs). */
  project(name: string, revision: number): Promise<Project>;
  /** The revision's built image (built now if it is not yet). */
  image(name: string, revision: number): Promise<string>;
  /** A `.cycleswap/` project's source files, copied into /app. */
  sourceFiles(name: string, revision: number, project: Project): Promise<readonly TarEntry[]>;
  /** The host folder of a volume (undefined: not on this server). */
  volumeSource(volume: string): Promise<string | undefined>;
  /** Puts an artifact's file at `target` (an `_artifacts.download`); never overwrites. */
  fetchArtifact(artifactId: string, target: string): Promise<void>;
  /** A scratch folder for one task (removed after it). */
  workDir(taskId: string): string;
  /**
   * Where a task's captured /artifacts files are kept; what is there already is put back before
   * it starts (on another machine, fetched from the server first).
   */
  artifactStore(jobId: string, taskId: string): Promise<string>;
}

/** The in-process worker's inputs: the server's own data folder. */
export class LocalTaskInputs implements TaskInputs {
  private readonly sources = new Map<string, TarEntry[]>();

  constructor(
    private readonly options: {
      db: DB;
      layout: Layout;
      projects: ProjectService;
      jobs: JobService;
      /** What a pushed tree may be: the source walk stops at the first step past them (older pushes too). */
      treeLimits: TreeLimits;
    },
  ) {}

  project(name: string, revision: number): Promise<Project> {
    return this.options.projects.load(name, revision);
  }

  image(name: string, revision: number): Promise<string> {
    return this.options.projects.ensureImage(name, revision);
  }

  async sourceFiles(name: string, revision: number, project: Project): Promise<readonly TarEntry[]> {
    const key = `${name}@${revision}`;
    const cached = this.sources.get(key);
    if (cached) return cached;
    // A pushed tree: walked within the limits its push was checked against (older pushes too).
    const selection = await selectFiles(project.root, { rules: false, limits: this.options.treeLimits });
    const entries = toTarEntries(selection.entries);
    this.sources.set(key, entries);
    return entries;
  }

  volumeSource(volume: string): Promise<string | undefined> {
    return volumeMountSource(this.options.db, this.options.layout, volume);
  }

  async fetchArtifact(artifactId: string, target: string): Promise<void> {
    await fs.copyFile(this.options.jobs.artifact(artifactId).path, target, fsConstants.COPYFILE_EXCL);
  }

  workDir(taskId: string): string {
    return this.options.layout.taskWork(taskId);
  }

  async artifactStore(jobId: string, taskId: string): Promise<string> {
    return this.options.layout.taskOutputs(jobId, taskId);
  }
}
