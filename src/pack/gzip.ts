import { Transform, pipeline, type Readable, type TransformCallback } from 'node:stream';
import zlib from 'node:zlib';

/**
 * gzip with a fixed header (no name, mtime 0, OS "unix"), so the bytes depend only on the
 * input and the zlib build: zlib's own gzip wrapper would stamp the OS of the machine.
 * Built from standard transforms, so backpressure holds end to end.
 */
export function gzipDeterministic(input: Readable, level = 6): Readable {
  let crc = 0;
  let length = 0;
  const checksum = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      crc = zlib.crc32(chunk, crc);
      length = (length + chunk.length) >>> 0;
      callback(null, chunk);
    },
  });
  let headerSent = false;
  const frame = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      if (!headerSent) {
        this.push(GZIP_HEADER);
        headerSent = true;
      }
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      if (!headerSent) this.push(GZIP_HEADER);
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(crc >>> 0, 0);
      trailer.writeUInt32LE(length, 4);
      callback(null, trailer);
    },
  });
  pipeline(input, checksum, zlib.createDeflateRaw({ level }), frame, (error) => {
    if (error) frame.destroy(error);
  });
  return frame;
}

const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03]);
