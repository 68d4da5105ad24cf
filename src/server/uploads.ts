import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import type { Clock } from '../context.js';
import { timestamp, type DB } from './db.js';
import { malformed, tooLarge } from './errors.js';
import { receiveBody } from './receive.js';
import type { Layout } from './layout.js';
import { MAX_NAME_BYTES } from './limits.js';

/** Computalot's documented cap on one `POST /api/v1/artifacts`. */
export const DEFAULT_MAX_ARTIFACT_BYTES = 2 * 1024 ** 3;

export interface UploadRow {
  id: string;
  sha256: string;
  filename: string;
  size: number;
  path: string;
  created_at: string;
}

export interface UploadDocument {
  id: string;
  artifact_id: string;
  filename: string;
  name: string;
  size: number;
  sha256: string;
  created_at: string;
}

export const directUploadSchema = z.strictObject({
  sha256: z.string().regex(/^[0-9a-f]{64}$/, { error: 'expected 64 lowercase hex digits (the SHA-256 of the file)' }),
  size: z.number().int().nonnegative(),
  filename: z.string(),
});

/** The id of uploaded bytes: the same bytes always get the same id. */
export function uploadIdFor(sha256: string): string {
  return `art_${sha256.slice(0, 32)}`;
}

/**
 * A file name as `X-Artifact-Filename` or `/direct` gives it: a plain name (no folder, no
 * control character), `field` naming where it came from in the error.
 */
export function checkUploadFilename(name: string | undefined, field: string): string {
  if (name === undefined || name === '') throw malformed('invalid_filename', `${field} is missing: name the file, e.g. ${field}: data.csv`, field);
  if (/[/\\]/.test(name)) throw malformed('invalid_filename', `${field} "${name}" has a path separator: send the file's name only, e.g. data.csv`, field);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) throw malformed('invalid_filename', `${field} has a control character: send a printable file name`, field);
  if (name === '.' || name === '..') throw malformed('invalid_filename', `${field} "${name}" is not a file name`, field);
  if (Buffer.byteLength(name) > MAX_NAME_BYTES)
    throw malformed('invalid_filename', `${field} is ${Buffer.byteLength(name)} bytes long: at most ${MAX_NAME_BYTES}`, field);
  return name;
}

/** Artifacts sent by clients (`POST /api/v1/artifacts`): content-addressed blobs under the data folder. */
export class UploadService {
  /** `clock`: where stored timestamps come from (the system's clock unless set). */
  constructor(private readonly options: { db: DB; layout: Layout; maxBytes: number; clock?: Clock }) {}

  /**
   * Streams the body to disk while hashing it; the same bytes stored once, under one id.
   * `filename` is as the client named it (`X-Artifact-Filename`), `declared` the length it announced.
   */
  async upload(body: Readable, sent: { filename: string | undefined; declared: number }): Promise<{ document: UploadDocument; created: boolean }> {
    const { layout, maxBytes } = this.options;
    const filename = checkUploadFilename(sent.filename, 'X-Artifact-Filename');
    const declared = sent.declared;
    if (declared > maxBytes) throw tooLarge('payload_too_large', `the artifact is ${declared} bytes, over the ${maxBytes}-byte limit`);
    await fs.mkdir(layout.tmp, { recursive: true });
    const temp = path.join(layout.tmp, `artifact-${randomBytes(6).toString('hex')}`);
    try {
      const { size, sha256 } = await receiveBody(body, temp, { maxBytes, tooLarge: `the artifact is over the ${maxBytes}-byte limit`, mode: 0o600 });
      const existing = this.bySha(sha256);
      if (existing) return { document: uploadDocument(existing), created: false };
      const blob = layout.uploadBlob(sha256);
      await fs.mkdir(path.dirname(blob), { recursive: true });
      await fs.rename(temp, blob);
      const row: UploadRow = { id: uploadIdFor(sha256), sha256, filename, size, path: blob, created_at: timestamp(this.options.clock) };
      this.options.db
        .prepare('INSERT OR IGNORE INTO uploads (id, sha256, filename, size, path, created_at) VALUES (?, ?, ?, ?, ?, ?)')
        .run(row.id, row.sha256, row.filename, row.size, row.path, row.created_at);
      return { document: uploadDocument(this.bySha(sha256) ?? row), created: true };
    } finally {
      await fs.rm(temp, { force: true });
    }
  }

  /** `POST /api/v1/artifacts/direct`: whether these bytes are here already; if not, where to send them. */
  direct(request: z.infer<typeof directUploadSchema>, baseUrl: string): Record<string, unknown> {
    const filename = checkUploadFilename(request.filename, 'filename');
    if (request.size > this.options.maxBytes)
      throw tooLarge('payload_too_large', `size ${request.size} is over this server's ${this.options.maxBytes}-byte limit per artifact`, 'size');
    const existing = this.bySha(request.sha256);
    if (existing) return { exists: true, artifact_id: existing.id, artifact: uploadDocument(existing), upload_url: null };
    return {
      exists: false,
      artifact_id: uploadIdFor(request.sha256),
      upload_url: `${baseUrl}/api/v1/artifacts`,
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream', 'X-Artifact-Filename': filename },
      max_bytes: this.options.maxBytes,
    };
  }

  row(id: string): UploadRow | undefined {
    return this.options.db.prepare('SELECT * FROM uploads WHERE id = ?').get(id) as UploadRow | undefined;
  }

  private bySha(sha256: string): UploadRow | undefined {
    return this.options.db.prepare('SELECT * FROM uploads WHERE sha256 = ?').get(sha256) as UploadRow | undefined;
  }
}

export function uploadDocument(row: UploadRow): UploadDocument {
  return { id: row.id, artifact_id: row.id, filename: row.filename, name: row.filename, size: row.size, sha256: row.sha256, created_at: row.created_at };
}
