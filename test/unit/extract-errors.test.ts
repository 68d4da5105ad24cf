import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { extractTarball, UnsafeTarball } from '../../src/server/extract.js';
import { rawTarGz, VALID_PROJECT } from '../helpers/tarballs.js';
import { tempDir } from '../helpers/context.js';

/** Told apart by node-tar's error codes, not by the wording of its messages. */
describe('extracting bytes that are not a valid .tar.gz', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    for (const dir of dirs.splice(0)) await fs.rm(dir, { recursive: true, force: true });
  });
  const limits = { maxFiles: 1000, maxBytes: 10 << 20 };
  const good = rawTarGz(VALID_PROJECT);

  it.each([
    ['a gzipped text', gzipSync(Buffer.from('hello, this is not a tar archive at all'.repeat(30)))],
    ['a gzip stream cut short', good.subarray(0, good.length - 30)],
    ['a corrupt gzip stream', Buffer.concat([good.subarray(0, 20), Buffer.alloc(50, 7), good.subarray(70)])],
    ['nothing at all', Buffer.alloc(0)],
  ])('%s: refused as not a valid .tar.gz, nothing left behind', async (_name, bytes) => {
    const parent = await tempDir('cycle-extract-');
    dirs.push(parent);
    const dest = path.join(parent, 'tree');
    const refused = extractTarball(Readable.from([bytes]), dest, limits);
    await expect(refused).rejects.toBeInstanceOf(UnsafeTarball);
    await expect(refused).rejects.toThrow(/^not a valid \.tar\.gz: /);
    await expect(fs.access(dest)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
