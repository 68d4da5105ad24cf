import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { capturedListSchema, revisionAnswerSchema, volumeAnswerSchema } from '../../api/machine-protocol.js';
import type { Transport } from '../../api/transport.js';
import type { DockerDriver } from '../../docker/driver.js';
import { selectFiles, toTarEntries } from '../../pack/select.js';
import type { TarEntry } from '../../pack/tar.js';
import { checkProjectAt, type Project } from '../../project/load.js';
import type { BuildRecord, BuildStore } from '../../runner/build-store.js';
import { DEFAULT_MAX_LAYERS } from '../../runner/cycleswap-build.js';
import { ensureProjectImage } from '../../runner/project-image.js';
import { placeContained, refusedNameReason } from '../../util/contained.js';
import { readJsonFile, sha256File, writeFileAtomic } from '../../util/fs.js';
import { joinInside } from '../../util/paths.js';
import { extractTarball } from '../extract.js';
import { DEFAULT_MAX_COMPRESSION_RATIO, DEFAULT_TREE_LIMITS } from '../limits.js';
import type { TaskInputs } from './task-inputs.js';

export interface HttpTaskInputsOptions {
  transport: Transport;
  /** The daemon's data folder: its caches (revisions, images' build records, volume files) and its tasks' folders. */
  dataDir: string;
  docker: () => Promise<DockerDriver>;
  log: (line: string) => void;
  /** What an unpacked revision may take (as the server's push limits). */
  maxExtractBytes?: number;
  maxFiles?: number;
}

/**
 * A worker's inputs on another machine, fetched from the server's machine routes for the leases
 * this machine holds, and cached by content under the daemon's data folder: a revision's tarball
 * is fetched and unpacked once per machine (a second task of the same revision fetches nothing),
 * its image built here once under the same build-hash rules as the server's, a volume's files
 * kept by sha256. A task's captured /artifacts are restored from the server before it runs
 * again. Every file from the server is checked against the sha256 it names.
 */
export class HttpTaskInputs implements TaskInputs {
  private readonly revisions = new Map<string, Promise<{ project: Project; contentHash: string }>>();
  private readonly sources = new Map<string, readonly TarEntry[]>();
  /** One image build per project at a time. */
  private readonly building = new Map<string, Promise<unknown>>();
  private readonly volumeTrees = new Map<string, Promise<string>>();

  constructor(private readonly options: HttpTaskInputsOptions) {}

  private get dir() {
    const root = this.options.dataDir;
    return {
      tmp: path.join(root, 'tmp'),
      tree: (sha: string) => joinInside(path.join(root, 'trees'), sha),
      builds: (project: string) => joinInside(path.join(root, 'builds'), `${encodeURIComponent(project)}.json`),
      volumeBlob: (sha: string) => joinInside(path.join(root, 'blobs', 'volumes'), sha),
      volumeTree: (name: string, version: string) => joinInside(path.join(root, 'volume-trees'), encodeURIComponent(name), version),
      builtinVolume: (name: string) => joinInside(path.join(root, 'volumes', 'builtin'), name),
      work: (taskId: string) => joinInside(path.join(root, 'work'), taskId),
      outputs: (jobId: string, taskId: string) => joinInside(path.join(root, 'artifacts'), jobId, taskId),
    };
  }

  async project(name: string, revision: number): Promise<Project> {
    return (await this.revision(name, revision)).project;
  }

  /** The revision's tree here: unpacked from its tarball once (by content hash), loaded once per process. */
  private revision(name: string, number: number): Promise<{ project: Project; contentHash: string }> {
    const key = `${name}@${number}`;
    let loading = this.revisions.get(key);
    if (!loading) {
      loading = this.loadRevision(name, number);
      loading.catch(() => this.revisions.delete(key)); // asked again next time
      this.revisions.set(key, loading);
    }
    return loading;
  }

  private async loadRevision(name: string, number: number): Promise<{ project: Project; contentHash: string }> {
    const route = `/api/v1/machine/projects/${encodeURIComponent(name)}/revisions/${number}`;
    const { body: meta } = await this.options.transport.request('GET', route, { schema: revisionAnswerSchema });
    const tree = this.dir.tree(meta.content_hash);
    if (!(await isDirectory(tree))) {
      await fs.mkdir(this.dir.tmp, { recursive: true });
      const tarball = path.join(this.dir.tmp, `revision-${randomBytes(6).toString('hex')}.tar.gz`);
      const unpacked = path.join(this.dir.tmp, `tree-${randomBytes(6).toString('hex')}`);
      try {
        await this.download(`${route}/tarball`, tarball, meta.content_hash);
        await extractTarball(createReadStream(tarball), unpacked, {
          ...DEFAULT_TREE_LIMITS,
          maxBytes: this.options.maxExtractBytes ?? 8 * 1024 ** 3,
          maxFiles: this.options.maxFiles ?? 200_000,
          maxCompressionRatio: DEFAULT_MAX_COMPRESSION_RATIO,
        });
        await fs.mkdir(path.dirname(tree), { recursive: true });
        await fs.rename(unpacked, tree).catch(async (error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error; // unpacked meanwhile
        });
        this.options.log(`project ${name}: revision ${number} fetched (${meta.content_hash.slice(0, 12)})`);
      } finally {
        await fs.rm(tarball, { force: true });
        await fs.rm(unpacked, { recursive: true, force: true });
      }
    }
    const check = await checkProjectAt(tree, meta.format);
    if (!check.project) throw new Error(`revision ${number} of ${name} does not validate on this machine`);
    return { project: check.project, contentHash: meta.content_hash };
  }

  /** The revision's image, built on this machine (kept per machine, reused while its build hash holds). */
  image(name: string, revision: number): Promise<string> {
    const previous = this.building.get(name) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => this.build(name, revision));
    this.building.set(name, next);
    return next;
  }

  private async build(name: string, number: number): Promise<string> {
    const { project } = await this.revision(name, number);
    const docker = await this.options.docker();
    const storeFile = this.dir.builds(name);
    const store: BuildStore = {
      last: () => readJsonFile<BuildRecord>(storeFile),
      save: async (record) => {
        await fs.mkdir(path.dirname(storeFile), { recursive: true });
        await writeFileAtomic(storeFile, JSON.stringify(record, null, 2) + '\n');
      },
    };
    const built = await ensureProjectImage(project, name, {
      docker,
      store,
      projectKey: `daemon:${name}`,
      repositoryPrefix: 'cycle-daemon',
      flags: { rebuild: false, clean: false },
      maxLayers: DEFAULT_MAX_LAYERS,
      report: (message) => this.options.log(`project ${name}: ${message}`),
      now: () => new Date(),
      verify: true,
      useStatCache: false,
    });
    if ('image' in built) return built.image.imageId;
    throw new Error(`the project build failed on this machine: ${built.error.message}${built.tail.length ? `\n${built.tail.join('\n')}` : ''}`);
  }

  async sourceFiles(name: string, revision: number, project: Project): Promise<readonly TarEntry[]> {
    const key = `${name}@${revision}`;
    const cached = this.sources.get(key);
    if (cached) return cached;
    const selection = await selectFiles(project.root, { rules: false, limits: DEFAULT_TREE_LIMITS });
    const entries = toTarEntries(selection.entries);
    this.sources.set(key, entries);
    return entries;
  }

  /** The volume at the version the server has now: its files fetched by content (each once per machine), made a folder once per version. */
  async volumeSource(volume: string): Promise<string | undefined> {
    const { body } = await this.options.transport.request('GET', `/api/v1/machine/volumes/${encodeURIComponent(volume)}`, {
      schema: volumeAnswerSchema,
      accept: [404],
    });
    if (!body || !('builtin' in body)) return undefined;
    if (body.builtin) {
      // The machine's own folder for a platform volume (as the server's operator puts files in its own).
      const folder = this.dir.builtinVolume(volume.slice('builtin/'.length));
      await fs.mkdir(folder, { recursive: true });
      return folder;
    }
    const version = body.version!;
    if (!/^[0-9a-f]{64}$/.test(version))
      throw new Error(`the server named volume ${volume}'s version ${JSON.stringify(version.slice(0, 80))}: expected a sha256`);
    const key = `${volume}@${version}`;
    let making = this.volumeTrees.get(key);
    if (!making) {
      making = this.makeVolumeTree(volume, version, body.files);
      making.catch(() => this.volumeTrees.delete(key));
      this.volumeTrees.set(key, making);
    }
    return making;
  }

  private async makeVolumeTree(volume: string, version: string, files: Array<{ path: string; sha256: string; executable?: unknown }>): Promise<string> {
    const tree = this.dir.volumeTree(volume, version);
    if (await isDirectory(tree)) return tree;
    await fs.mkdir(this.dir.tmp, { recursive: true });
    const building = path.join(this.dir.tmp, `volume-${randomBytes(6).toString('hex')}`);
    await fs.mkdir(building);
    try {
      for (const file of files) {
        if (!/^[0-9a-f]{64}$/.test(file.sha256))
          throw new Error(`volume ${volume}: the server named a file's sha256 ${JSON.stringify(file.sha256.slice(0, 80))}`);
        const reason = refusedNameReason(file.path);
        if (reason) throw new Error(`volume ${volume}: the server named a file ${JSON.stringify(file.path.slice(0, 200))}: ${reason}`);
        const blob = this.dir.volumeBlob(file.sha256);
        if (!(await isFile(blob))) {
          await fs.mkdir(path.dirname(blob), { recursive: true });
          const part = `${blob}.${randomBytes(4).toString('hex')}.part`;
          await this.download(`/api/v1/machine/volumes/${encodeURIComponent(volume)}/blobs/${file.sha256}`, part, file.sha256);
          await fs.rename(part, blob);
        }
        const copy = path.join(building, `.copy-${randomBytes(6).toString('hex')}`);
        await fs.copyFile(blob, copy);
        await fs.chmod(copy, file.executable === true ? 0o755 : 0o644);
        await placeContained(building, copy, file.path, false);
      }
      await fs.mkdir(path.dirname(tree), { recursive: true });
      await fs.rename(building, tree).catch(async (error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
      });
      return tree;
    } finally {
      await fs.rm(building, { recursive: true, force: true });
    }
  }

  async fetchArtifact(artifactId: string, target: string): Promise<void> {
    await this.download(`/api/v1/machine/artifacts/${encodeURIComponent(artifactId)}`, target);
  }

  workDir(taskId: string): string {
    return this.dir.work(taskId);
  }

  /**
   * The task's artifact store here, holding what the server has of it (a task that ran before,
   * here or on another machine, starts with what it had captured): a file already here with the
   * same sha256 is kept, the rest fetched; anything the server does not have is dropped.
   */
  async artifactStore(jobId: string, taskId: string): Promise<string> {
    const store = this.dir.outputs(jobId, taskId);
    const { body } = await this.options.transport.request('GET', `/api/v1/machine/tasks/${encodeURIComponent(taskId)}/captured`, {
      schema: capturedListSchema,
    });
    const previous = `${store}.previous-${randomBytes(4).toString('hex')}`;
    const hadStore = await isDirectory(store);
    if (hadStore) await fs.rename(store, previous);
    await fs.mkdir(store, { recursive: true });
    try {
      for (const file of body.files) {
        const reason = refusedNameReason(file.path);
        if (reason) throw new Error(`the server named a captured file ${JSON.stringify(file.path.slice(0, 200))}: ${reason}`);
        const old = joinInside(previous, ...file.path.split('/'));
        const temp = path.join(store, `.restore-${randomBytes(6).toString('hex')}`);
        if (hadStore && (await isFile(old)) && (await sha256File(old)) === file.sha256) await fs.rename(old, temp);
        else await this.download(`/api/v1/machine/tasks/${encodeURIComponent(taskId)}/captured/${encodeURIComponent(file.id)}`, temp, file.sha256);
        await placeContained(store, temp, file.path, true);
      }
    } finally {
      if (hadStore) await fs.rm(previous, { recursive: true, force: true });
    }
    if (body.files.length) this.options.log(`task ${taskId}: restored ${body.files.length} captured artifact(s) from the server`);
    return store;
  }

  /** A file from the server into `target` (a new file), its bytes checked against `sha256` (the named one, or the answer's). */
  private async download(route: string, target: string, sha256?: string): Promise<void> {
    const response = await this.options.transport.request('GET', route, { raw: true });
    const header = response.headers['x-checksum-sha256'];
    const expected = sha256 ?? (typeof header === 'string' ? header : undefined);
    const hash = createHash('sha256');
    const meter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        hash.update(chunk);
        callback(null, chunk);
      },
    });
    try {
      await pipeline(response.body, meter, createWriteStream(target, { flags: 'wx', mode: 0o600 }));
      const got = hash.digest('hex');
      if (expected && got !== expected) throw new Error(`GET ${route}: the file's sha256 is ${got}, the server named ${expected}: not used`);
    } catch (error) {
      await fs.rm(target, { force: true });
      throw error;
    }
  }
}

async function isDirectory(file: string): Promise<boolean> {
  return (await fs.lstat(file).catch(() => undefined))?.isDirectory() === true;
}

async function isFile(file: string): Promise<boolean> {
  return (await fs.lstat(file).catch(() => undefined))?.isFile() === true;
}
