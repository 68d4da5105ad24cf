import os from 'node:os';
import { Transform, pipeline, type Readable, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';
import { CHUNK, type ChunkPool } from './tar.js';

/** The tar stream is compressed in segments of this size, several at a time (as pigz does). */
const SEGMENT = CHUNK;
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03]);

/** Deflate's window: each segment is primed with this much of the input before it (as pigz does). */
const WINDOW = 32 * 1024;

/**
 * One segment, deflated on the thread pool in one pass: an output buffer a little larger than
 * deflate's worst case for the segment, so the job does not return to the main thread every
 * 16 KiB of output (zlib's default chunkSize made eight round trips per MiB, and with them the
 * compression waited on the main thread's tar work). Primed with the 32 KiB of input before it,
 * so matches reach across segment boundaries and the output is as small as one long stream's.
 */
function deflateSegment(segment: Buffer, level: number, last: boolean, dictionary: Buffer | undefined): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    zlib.deflateRaw(
      segment,
      {
        level,
        finishFlush: last ? zlib.constants.Z_FINISH : zlib.constants.Z_FULL_FLUSH,
        chunkSize: Math.max(zlib.constants.Z_MIN_CHUNK, segment.length + (segment.length >> 8) + 1024),
        ...(dictionary ? { dictionary } : {}),
      },
      (error, out) => (error ? reject(error) : resolve(out)),
    ),
  );
}

/**
 * gzip that gives the same bytes for the same input on every machine, and uses every core:
 * - a fixed header (no name, mtime 0, OS "unix"): zlib's own wrapper stamps the machine's OS;
 * - the input cut at fixed 1 MiB boundaries, each segment deflated on its own on the thread
 *   pool (non-final segments end with a full flush), primed with the 32 KiB of input before it
 *   (pigz's trick: the decoder's window already holds them), joined in order into one gzip member.
 * The output depends only on the input, the level and the zlib build, and is within a fraction
 * of a percent of one long stream's size (unprimed 1 MiB segments cost ~7% on text).
 */
export function gzipDeterministic(input: Readable, level = 6, pool?: ChunkPool): Readable {
  // At least four in flight: measured here, 2 vCPUs compress 1.5x faster with 4 segments queued than with 2.
  const parallel = Math.max(4, Math.min(8, typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length));
  let crc = 0;
  let length = 0;
  let pending: Buffer[] = [];
  let pendingSize = 0;
  /** The last WINDOW bytes of the input so far (a copy: the chunk goes back to the pool). */
  let tail: Buffer | undefined;
  const inflight: Array<Promise<Buffer>> = [];

  const output = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      crc = zlib.crc32(chunk, crc);
      length = (length + chunk.length) >>> 0;
      pending.push(chunk);
      pendingSize += chunk.length;
      void (async () => {
        while (pendingSize >= SEGMENT) {
          // tarStream sends exactly SEGMENT-sized chunks: then nothing is copied here.
          const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingSize);
          const rest = all.subarray(SEGMENT);
          pending = rest.length ? [rest] : [];
          pendingSize = rest.length;
          const segment = all.subarray(0, SEGMENT);
          const compressing = deflateSegment(segment, level, false, tail);
          tail = Buffer.from(segment.subarray(segment.length - WINDOW));
          // Once compressed, the chunk goes back to the tar writer's pool.
          if (pool && all.length === SEGMENT)
            void compressing.then(
              () => pool.release(all),
              () => undefined,
            );
          compressing.catch(() => undefined); // reported when awaited, in order
          inflight.push(compressing);
          if (inflight.length >= parallel) this.push(await inflight.shift()!);
        }
      })().then(() => callback(), callback);
    },
    flush(callback: TransformCallback) {
      void (async () => {
        inflight.push(deflateSegment(pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingSize), level, true, tail));
        for (const compressing of inflight.splice(0)) this.push(await compressing);
        const trailer = Buffer.alloc(8);
        trailer.writeUInt32LE(crc >>> 0, 0);
        trailer.writeUInt32LE(length, 4);
        this.push(trailer);
      })().then(() => callback(), callback);
    },
  });
  output.push(GZIP_HEADER);
  pipeline(input, output, (error) => {
    if (error) output.destroy(error);
  });
  return output;
}
