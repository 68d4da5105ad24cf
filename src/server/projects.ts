import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import type { Readable } from 'node:stream';
import path from 'node:path';
import { TERMINAL_JOB_STATUSES, type ProjectStatus, type PushResponse } from '../api/schemas.js';
import { KV_KEY_PATTERN } from '../api/schemas.js';
import type { DockerDriver } from '../docker/driver.js';
import { checkProjectAt, projectFormatsAt, type Project } from '../project/load.js';
import { COMPUTALOT_MANIFEST_PATH } from '../project/paths.js';
import { formatDiagnostic } from '../project/diagnostics.js';
import { collectBuildInputs } from '../build-hash/hash.js';
import { DEFAULT_MAX_LAYERS } from '../runner/cycleswap-build.js';
import { ensureProjectImage } from '../runner/project-image.js';
import type { BuildRecord, BuildStore } from '../runner/build-store.js';
import { LABELS, repositoryComponent } from '../runner/images.js';
import type { Clock } from '../context.js';
import { type DB, timestamp, parseJson } from './db.js';
import type { EventLog } from './events.js';
import { ExtractFailed, ExtractOverLimit, extractTarball, UnsafeTarball, type ExtractLimits } from './extract.js';
import { DomainError, invalid, malformed, notFound, tooLarge } from './errors.js';
import { PushQuotas, refusedPush } from './push-quotas.js';
import { receiveBody } from './receive.js';
import type { Layout } from './layout.js';
import { unknownVolumes } from './volumes.js';
import { isCycleError } from '../errors.js';
import { gvisorRegistered, jobContainer } from '../runner/limits.js';
import type { Env } from '../ui/streams.js';

export interface RevisionRow {
  project: string;
  number: number;
  content_hash: string;
  build_hash: string;
  format: 'cycleswap' | 'computalot';
  name_in_manifest: string | null;
  rebuild: number;
  clean: number;
  build_state: 'pending' | 'building' | 'ready' | 'failed';
  build_error: string | null;
  build_updated_at: string | null;
  image_id: string | null;
  created_at: string;
  /** Disk its content takes (tarball and tree); null for revisions stored before it was kept. */
  bytes: number | null;
}

/**
 * Retention (`cycle server-gc`): a revision goes unless, checked again in the same statement, it
 * is active or an unfinished job uses it. Returns whether it went.
 */
export function deleteRevisionUnlessUsed(db: DB, project: string, number: number): boolean {
  const finished = TERMINAL_JOB_STATUSES.map((status) => `'${status}'`).join(', ');
  return (
    db
      .prepare(
        `DELETE FROM revisions WHERE project = ? AND number = ?
           AND NOT EXISTS (SELECT 1 FROM projects WHERE name = revisions.project AND active_revision = revisions.number)
           AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.project = revisions.project AND jobs.revision = revisions.number AND jobs.status NOT IN (${finished}))`,
      )
      .run(project, number).changes === 1
  );
}

export interface ProjectServiceOptions {
  db: DB;
  /** Where stored timestamps come from (the system's clock unless set). */
  clock?: Clock;
  events: EventLog;
  layout: Layout;
  docker: () => Promise<DockerDriver>;
  /** Extraction's limits (tree shape, compression ratio) and the disk quotas of stored pushes. */
  limits: ExtractLimits & { maxUploadBytes: number; projectQuotaBytes: number; serverQuotaBytes: number };
  /** `init` needs $5 available: the account says whether there is (402 with a quote if not). */
  checkInit: (project: string) => void;
  maxLayers?: number;
  log: (line: string) => void;
  /** The server's environment (CYCLE_DOCKER_NETWORK, CYCLE_MEMORY_LIMIT): validation checks run under the job lock-down it sets. */
  env?: Env;
}

export interface ProjectDocument {
  name: string;
  revision: number | null;
  created_at: string;
  remote_dir: string | null;
}

export const projectKeyFor = (name: string): string => `server:${name}`;

/**
 * The internal project a recipe runs as. The ":" is outside PROJECT_NAME_PATTERN, so no push,
 * project route or project job can name it; project lists leave it out.
 */
export const RECIPE_PROJECT_PREFIX = 'recipe:';
export const recipeProject = (recipe: string): string => `${RECIPE_PROJECT_PREFIX}${recipe}`;
/** The recipe a project runs (null for a user's project). */
export const recipeOfProject = (project: string): string | null =>
  project.startsWith(RECIPE_PROJECT_PREFIX) ? project.slice(RECIPE_PROJECT_PREFIX.length) : null;

/** Projects: revisions from pushed tarballs, their images, readiness, and kv. */
export class ProjectService {
  private readonly building = new Map<string, Promise<string>>();
  private readonly loaded = new Map<string, Project>();
  private readonly quotas: PushQuotas;

  constructor(private readonly options: ProjectServiceOptions) {
    this.quotas = new PushQuotas(options.db, options.limits);
  }

  active(name: string): RevisionRow | undefined {
    return this.options.db
      .prepare('SELECT r.* FROM revisions r JOIN projects p ON p.name = r.project AND p.active_revision = r.number WHERE p.name = ?')
      .get(name) as RevisionRow | undefined;
  }

  revision(name: string, number: number): RevisionRow | undefined {
    return this.options.db.prepare('SELECT * FROM revisions WHERE project = ? AND number = ?').get(name, number) as RevisionRow | undefined;
  }

  requireActive(name: string): RevisionRow {
    const revision = this.active(name);
    if (!revision) throw notFound(`no project "${name}": push it first (cycle project upload)`, 'project');
    return revision;
  }

  /**
   * A pushed tarball (a request's body, or a recipe's folder packed by the server): stored by
   * content hash, extracted safely, validated, hashed, published.
   */
  async push(
    name: string,
    body: Readable,
    flags: { rebuild: boolean; clean: boolean; clientBuildHash?: string; declaredBytes?: number },
  ): Promise<PushResponse> {
    const { layout, limits, db } = this.options;
    if (flags.rebuild && flags.clean) throw invalid('invalid_flags', 'rebuild and clean cannot be used together', 'clean');
    if ((flags.declaredBytes ?? 0) > limits.maxUploadBytes) throw tooLarge('payload_too_large', `the tarball is over the ${limits.maxUploadBytes}-byte limit`);
    await fs.mkdir(layout.tmp, { recursive: true });
    const id = randomBytes(6).toString('hex');
    const upload = path.join(layout.tmp, `upload-${id}.tar.gz`);
    const tree = path.join(layout.tmp, `tree-${id}`);
    try {
      const { size, sha256: contentHash } = await receiveBody(body, upload, {
        maxBytes: limits.maxUploadBytes,
        tooLarge: `the tarball is over the ${limits.maxUploadBytes}-byte limit`,
      });
      if (size === 0) throw malformed('empty_body', 'the request body is empty: send the project as a .tar.gz');
      const current = this.active(name);
      if (current && current.content_hash === contentHash && !flags.rebuild && !flags.clean) {
        return this.pushResponse(current, true, flags.clientBuildHash);
      }
      const quota = this.quotas.left(name, contentHash, size);
      if (quota.bytes < 0) throw quota.refusal(0);
      let expanded: number;
      try {
        expanded = (await extractTarball(createReadStream(upload), tree, { ...limits, quota })).bytes;
      } catch (error) {
        if (error instanceof ExtractOverLimit) throw refusedPush(error);
        if (error instanceof UnsafeTarball) throw malformed('unsafe_tarball', `refused: ${error.message}`);
        if (error instanceof ExtractFailed) throw new DomainError('failed', 'extract_failed', error.message);
        throw error;
      }
      // The project is the tarball's root: never a folder above it (that is the server's own).
      const formats = await projectFormatsAt(tree);
      const [format] = formats;
      if (format === undefined) {
        throw invalid(
          'invalid_project',
          `no project at the root of the tarball: it needs .cycleswap/ (with manifest.toml) or ${COMPUTALOT_MANIFEST_PATH} at its top level; pack the project folder itself (\`cycle project upload\` from inside it)`,
        );
      }
      if (formats.length > 1) {
        throw invalid(
          'invalid_project',
          `the tarball has both .cycleswap/ and ${COMPUTALOT_MANIFEST_PATH} at its root; a project has one format: remove the one you do not use`,
        );
      }
      const check = await checkProjectAt(tree, format);
      if (!check.project) {
        const problems = check.diagnostics.filter((d) => d.severity === 'error').flatMap((d) => formatDiagnostic(d));
        throw invalid('invalid_project', `the project is invalid:\n${problems.join('\n')}`);
      }
      const project = check.project;
      if (project.format === 'cycleswap') {
        // The manifest's volumes are linked to this revision: each must be uploaded already.
        const [unknown, ...others] = unknownVolumes(db, project.manifest.main.volumes);
        if (unknown !== undefined) {
          throw invalid(
            'unknown_volume',
            `[main].volumes names "${unknown}"${others.length ? ` (and ${others.map((v) => `"${v}"`).join(', ')})` : ''}, which this server does not have: upload it first with \`cycle volume upload DIR --name ${unknown}\`, or remove it from .cycleswap/manifest.toml`,
            'volumes',
          );
        }
      }
      const buildHash = await this.buildHashOf(project);
      const bytes = size + expanded;
      // Checked again, now that the bytes are known, against what is stored and what other pushes
      // are committing: two pushes extracted side by side must not both fit a quota that holds one.
      const settled = this.quotas.left(name, contentHash, size);
      if (settled.bytes < expanded) throw refusedPush(settled.refusal(expanded));
      const reservation = { project: name, contentHash, bytes };
      this.quotas.committing.add(reservation);
      try {
        const manifestName = project.format === 'cycleswap' ? project.manifest.main.name : (project.manifest.name ?? null);
        // Content-addressed: the same tarball is stored once.
        await fs.mkdir(path.dirname(layout.tarball(contentHash)), { recursive: true });
        await fs.rename(upload, layout.tarball(contentHash));
        await fs.mkdir(path.dirname(layout.tree(contentHash)), { recursive: true });
        await fs.rename(tree, layout.tree(contentHash)).catch(async (error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
          await fs.rm(tree, { recursive: true, force: true }); // already there
        });
        const lastBuilt = this.buildRecord(name);
        const number = this.options.events.transaction((record) => {
          const at = timestamp(this.options.clock);
          db.prepare('INSERT OR IGNORE INTO projects (name, active_revision, created_at) VALUES (?, NULL, ?)').run(name, at);
          const next = ((db.prepare('SELECT MAX(number) AS n FROM revisions WHERE project = ?').get(name) as { n: number | null }).n ?? 0) + 1;
          const ready = !flags.rebuild && !flags.clean && lastBuilt?.hash === buildHash;
          db.prepare(
            'INSERT INTO revisions (project, number, content_hash, build_hash, format, name_in_manifest, rebuild, clean, build_state, image_id, build_updated_at, created_at, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
          ).run(
            name,
            next,
            contentHash,
            buildHash,
            project.format,
            manifestName,
            flags.rebuild ? 1 : 0,
            flags.clean ? 1 : 0,
            ready ? 'ready' : 'pending',
            ready ? lastBuilt!.image.id : null,
            ready ? at : null,
            at,
            bytes,
          );
          db.prepare('UPDATE projects SET active_revision = ? WHERE name = ?').run(next, name);
          record({ type: 'project.revision', project: name, data: { revision: next, content_hash: contentHash, build_hash: buildHash } });
          return next;
        });
        const revision = this.revision(name, number)!;
        this.options.log(`project ${name}: revision ${number} (${contentHash.slice(0, 12)})`);
        return this.pushResponse(revision, false, flags.clientBuildHash);
      } finally {
        this.quotas.committing.delete(reservation);
      }
    } finally {
      await fs.rm(upload, { force: true });
      await fs.rm(tree, { recursive: true, force: true });
    }
  }

  private pushResponse(revision: RevisionRow, unchanged: boolean, clientBuildHash: string | undefined): PushResponse {
    return {
      project: revision.project,
      format: revision.format,
      revision: revision.number,
      content_hash: revision.content_hash,
      build_hash: revision.build_hash,
      unchanged,
      rebuild: revision.build_state !== 'ready',
      build_hash_matches: clientBuildHash === undefined ? null : clientBuildHash === revision.build_hash,
    };
  }

  private async buildHashOf(project: Project): Promise<string> {
    if (project.format === 'cycleswap') return (await collectBuildInputs(project, { useCache: false })).hash;
    const { computalotBuildHash } = await import('../build-hash/oci-hash.js');
    return (await computalotBuildHash(project, { useCache: false })).hash;
  }

  status(name: string): ProjectStatus {
    const revision = this.requireActive(name);
    return {
      project: name,
      format: revision.format,
      revision: revision.number,
      content_hash: revision.content_hash,
      build_hash: revision.build_hash,
      published_at: revision.created_at,
      can_accept_new_jobs: true,
      ready_for_jobs: revision.build_state === 'ready',
      build: { state: revision.build_state, error: revision.build_error, updated_at: revision.build_updated_at },
    };
  }

  details(name: string): ProjectStatus & { nodes: Array<{ node: string; state: string; ready: boolean; error: string | null; updated_at: string | null }> } {
    const status = this.status(name);
    return {
      ...status,
      nodes: [{ node: 'local', state: status.build.state, ready: status.ready_for_jobs, error: status.build.error, updated_at: status.build.updated_at }],
    };
  }

  /** `init`: prepare the active revision ahead of jobs (402 below $5). */
  init(name: string): { project: string; revision: number; build: string } {
    const revision = this.requireActive(name);
    this.options.checkInit(name);
    void this.ensureImage(name, revision.number).catch(() => undefined); // state and error are recorded
    return { project: name, revision: revision.number, build: this.revision(name, revision.number)!.build_state };
  }

  /** Drops the prepared images: the next job builds again, from the base image. */
  async invalidate(name: string): Promise<{ project: string; removed_images: number }> {
    const revision = this.requireActive(name);
    const docker = await this.options.docker();
    const images = await docker.listImages({ label: [`${LABELS.projectKey}=${projectKeyFor(name)}`] });
    for (const image of images) await docker.removeImage(image.id, { force: true }).catch(() => undefined);
    this.options.events.transaction((record) => {
      this.options.db
        .prepare("UPDATE revisions SET build_state = 'pending', image_id = NULL, build_error = NULL, build_updated_at = ? WHERE project = ?")
        .run(timestamp(this.options.clock), name);
      this.options.db.prepare('DELETE FROM builds WHERE project = ?').run(name);
      record({ type: 'project.invalidated', project: name, data: { revision: revision.number } });
    });
    return { project: name, removed_images: new Set(images.map((i) => i.id)).size };
  }

  /** The project of a revision, loaded from its extracted tree (validated at push). */
  async load(name: string, number: number): Promise<Project> {
    const key = `${name}@${number}`;
    const cached = this.loaded.get(key);
    if (cached) return cached;
    const revision = this.revision(name, number);
    if (!revision) throw new Error(`no revision ${number} of ${name}`);
    const check = await checkProjectAt(this.options.layout.tree(revision.content_hash), revision.format);
    if (!check.project) throw new Error(`revision ${number} of ${name} no longer validates`);
    this.loaded.set(key, check.project);
    return check.project;
  }

  /**
   * The image of a revision, built once (one build per project at a time) with the same code
   * as `cycle project test`. A failed build is remembered: jobs of that revision fail fast.
   */
  ensureImage(name: string, number: number): Promise<string> {
    const key = `${name}`;
    const running = this.building.get(key);
    const next = (running ?? Promise.resolve('')).catch(() => '').then(() => this.buildRevision(name, number));
    this.building.set(key, next);
    void next
      .finally(() => {
        if (this.building.get(key) === next) this.building.delete(key);
      })
      .catch(() => undefined);
    return next;
  }

  private async buildRevision(name: string, number: number): Promise<string> {
    const { db, events } = this.options;
    const revision = this.revision(name, number);
    if (!revision) throw new Error(`no revision ${number} of ${name}`);
    if (revision.build_state === 'ready' && revision.image_id) {
      const docker = await this.options.docker();
      if (await docker.inspectImage(revision.image_id)) return revision.image_id;
    }
    if (revision.build_state === 'failed') throw new Error(`the project build failed: ${revision.build_error ?? 'unknown error'}`);
    const setState = (state: string, error: string | null, imageId: string | null): void =>
      events.transaction((record) => {
        db.prepare(
          'UPDATE revisions SET build_state = ?, build_error = ?, image_id = COALESCE(?, image_id), build_updated_at = ? WHERE project = ? AND number = ?',
        ).run(state, error, imageId, timestamp(this.options.clock), name, number);
        record({ type: 'project.build', project: name, data: { revision: number, state, error } });
      });
    setState('building', null, null);
    const project = await this.load(name, number);
    const docker = await this.options.docker();
    const built = await ensureProjectImage(project, name, {
      docker,
      store: this.store(name),
      projectKey: projectKeyFor(name),
      repositoryPrefix: 'cycle-server',
      flags: { rebuild: revision.rebuild === 1, clean: revision.clean === 1 },
      maxLayers: this.options.maxLayers ?? DEFAULT_MAX_LAYERS,
      report: (message) => this.options.log(`project ${name}: ${message}`),
      now: () => new Date(timestamp(this.options.clock)),
      verify: true,
      useStatCache: false,
    });
    try {
      if ('error' in built) throw built.error;
      const { image } = built;
      // The manifest's preflight checks run while a revision is prepared, as the platform runs them at init.
      if (project.format === 'computalot') await this.validate(project, name, number, image.imageId, docker);
      db.prepare('UPDATE revisions SET rebuild = 0, clean = 0 WHERE project = ? AND number = ?').run(name, number);
      setState('ready', null, image.imageId);
      return image.imageId;
    } catch (error) {
      const message = isCycleError(error) ? [error.message, ...error.details].join('\n') : (error as Error).message;
      setState('failed', message, null);
      throw new Error(`the project build failed: ${message}`);
    }
  }

  /**
   * Runs `validation` (executables, files, commands) in the prepared image, locked down as a job
   * is; any failure fails the revision's preparation, naming each failed check by its label.
   */
  private async validate(
    project: Extract<Project, { format: 'computalot' }>,
    name: string,
    number: number,
    imageId: string,
    docker: DockerDriver,
  ): Promise<void> {
    if (!project.manifest.validation) return;
    const sandbox = project.manifest.runtime.sandbox;
    const container = jobContainer({
      sandbox,
      skipLimits: false,
      gvisorRegistered: sandbox === 'gvisor' && (await gvisorRegistered(docker)),
      env: this.options.env ?? {},
    });
    const { runValidationChecks, describeFailedChecks } = await import('../runner/oci-build.js');
    const prefix = `cycle-server-check-${repositoryComponent(name)}-${number}-${randomBytes(3).toString('hex')}`;
    const checks = await runValidationChecks(project, imageId, docker, (suffix) => `${prefix}-${suffix}`, container);
    for (const check of checks)
      this.options.log(`project ${name}: validation ${check.ok ? 'ok' : 'FAILED'}: ${check.kind} ${check.name}${check.detail ? `: ${check.detail}` : ''}`);
    const failure = describeFailedChecks(checks);
    if (failure) throw failure;
  }

  /** The server's "last build" record of a project (what the next build layers on). */
  private store(name: string): BuildStore {
    return {
      last: async () => this.buildRecord(name),
      save: async (record) => {
        this.options.db
          .prepare('INSERT INTO builds (project, record) VALUES (?, ?) ON CONFLICT(project) DO UPDATE SET record = excluded.record')
          .run(name, JSON.stringify(record));
      },
    };
  }

  private buildRecord(name: string): BuildRecord | undefined {
    const row = this.options.db.prepare('SELECT record FROM builds WHERE project = ?').get(name) as { record: string } | undefined;
    return row ? parseJson<BuildRecord | undefined>(row.record, undefined) : undefined;
  }

  kvGet(name: string, key: string): { project: string; key: string; value: unknown; updated_at: string } {
    checkKey(key);
    this.requireActive(name);
    const row = this.options.db.prepare('SELECT value, updated_at FROM kv WHERE project = ? AND key = ?').get(name, key) as
      | { value: string; updated_at: string }
      | undefined;
    if (!row) throw notFound(`no key "${key}" in project "${name}"`, 'key');
    return { project: name, key, value: JSON.parse(row.value), updated_at: row.updated_at };
  }

  kvPut(name: string, key: string, value: unknown): { project: string; key: string; value: unknown; updated_at: string } {
    checkKey(key);
    this.requireActive(name);
    const text = JSON.stringify(value);
    if (text === undefined) throw malformed('invalid_value', 'the value must be JSON', 'value');
    if (Buffer.byteLength(text) > 64 * 1024) throw tooLarge('payload_too_large', 'kv values are small: at most 64 KiB of JSON', 'value');
    const at = timestamp(this.options.clock);
    this.options.db
      .prepare(
        'INSERT INTO kv (project, key, value, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(project, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at',
      )
      .run(name, key, text, at);
    this.options.events.append({ type: 'kv', project: name, data: { key } });
    return { project: name, key, value, updated_at: at };
  }

  kvList(name: string): Array<{ project: string; key: string; value: unknown; updated_at: string }> {
    this.requireActive(name);
    const rows = this.options.db.prepare('SELECT key, value, updated_at FROM kv WHERE project = ? ORDER BY key').all(name) as Array<{
      key: string;
      value: string;
      updated_at: string;
    }>;
    return rows.map((row) => ({ project: name, key: row.key, value: JSON.parse(row.value), updated_at: row.updated_at }));
  }

  /** `POST /api/v1/projects`: a project known before its first push; creating one that exists answers it as it is. */
  create(name: string, remoteDir: string | null): { project: ProjectDocument; created: boolean } {
    const { db } = this.options;
    const created =
      db
        .prepare('INSERT OR IGNORE INTO projects (name, active_revision, created_at, remote_dir) VALUES (?, NULL, ?, ?)')
        .run(name, timestamp(this.options.clock), remoteDir).changes === 1;
    const row = db.prepare('SELECT name, active_revision AS revision, created_at, remote_dir FROM projects WHERE name = ?').get(name) as ProjectDocument;
    return { project: row, created };
  }

  list(): Array<{ name: string; revision: number | null; created_at: string }> {
    // Recipes' projects are the server's own: GET /api/v1/recipes shows them.
    return this.options.db
      .prepare('SELECT name, active_revision AS revision, created_at FROM projects WHERE name NOT LIKE ? ORDER BY name')
      .all(`${RECIPE_PROJECT_PREFIX}%`) as Array<{
      name: string;
      revision: number | null;
      created_at: string;
    }>;
  }

  /** After a crash: builds that were running start over when asked. */
  recover(): void {
    this.options.db.prepare("UPDATE revisions SET build_state = 'pending' WHERE build_state = 'building'").run();
  }
}

function checkKey(key: string): void {
  if (!KV_KEY_PATTERN.test(key)) throw malformed('invalid_key', `invalid key "${key}": use 1-128 letters, digits, ".", "_" or "-"`, 'key');
}
