import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { tooLarge } from './errors.js';

/**
 * Streams a body into a new file (`wx`: never over one that exists), counting and
 * hashing it as it arrives; past `maxBytes` it stops with a too-large error carrying `tooLarge`.
 */
export async function receiveBody(
  body: Readable,
  file: string,
  options: { maxBytes: number; tooLarge: string; mode?: number },
): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      if (size > options.maxBytes) return callback(tooLarge('payload_too_large', options.tooLarge));
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  await pipeline(body, meter, createWriteStream(file, { flags: 'wx', ...(options.mode !== undefined ? { mode: options.mode } : {}) }));
  return { size, sha256: hash.digest('hex') };
}
