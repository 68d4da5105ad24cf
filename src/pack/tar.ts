import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import { CycleError, ExitCode } from '../errors.js';

/** What goes into a tar entry; `path` is POSIX and relative. */
export interface TarEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink';
  size: number;
  executable: boolean;
  linkTarget?: string;
  /** Where to read a file's bytes from (a path on disk, or the bytes themselves). */
  source?: string | Uint8Array;
}

/** Fixed metadata: the same tree gives the same bytes on every machine. */
const FIXED_MTIME = 0;
const BLOCK = 512;
const SMALL_FILE = 1 << 20;

export interface TarOptions {
  /** Prepended to every path (e.g. "app/"). */
  prefix?: string;
}

/**
 * A deterministic tar stream (POSIX ustar, PAX records for long or non-ASCII names): entries in
 * the order given, mtime 0, uid/gid 0 (root), modes 0644/0755, directories 0755.
 */
export function tarStream(entries: Iterable<TarEntry> | AsyncIterable<TarEntry>, options: TarOptions = {}): Readable {
  const prefix = options.prefix ?? '';
  async function* generate(): AsyncGenerator<Buffer> {
    for await (const entry of entries) {
      const name = prefix + entry.path + (entry.type === 'directory' ? '/' : '');
      yield* header(name, entry);
      if (entry.type !== 'file') continue;
      let written = 0;
      if (entry.source instanceof Uint8Array) {
        written = entry.source.length;
        yield Buffer.from(entry.source);
      } else if (entry.size < SMALL_FILE) {
        const data = await fs.readFile(entry.source ?? entry.path);
        written = data.length;
        if (written === entry.size) yield data;
      } else {
        for await (const chunk of createReadStream(entry.source ?? entry.path, { highWaterMark: 1 << 20 })) {
          const buffer = chunk as Buffer;
          if (written + buffer.length > entry.size) {
            written += buffer.length;
            break;
          }
          written += buffer.length;
          yield buffer;
        }
      }
      if (written !== entry.size) {
        throw new CycleError({
          message: `${entry.path} changed while it was being packed (${entry.size} bytes expected, ${written} read)`,
          hint: 'wait for whatever writes the file to finish, or leave it out with .cycleignore, and try again',
          exitCode: ExitCode.failure,
        });
      }
      const padding = (BLOCK - (entry.size % BLOCK)) % BLOCK;
      if (padding) yield Buffer.alloc(padding);
    }
    yield Buffer.alloc(BLOCK * 2);
  }
  return Readable.from(generate(), { objectMode: false });
}

function* header(name: string, entry: TarEntry): Generator<Buffer> {
  const linkname = entry.linkTarget ?? '';
  const pax: Array<[string, string]> = [];
  const ascii = (s: string): boolean => /^[\x20-\x7e]*$/.test(s);
  let ustarName = name;
  let ustarPrefix = '';
  if (Buffer.byteLength(name) > 100 || !ascii(name)) {
    const split = splitUstarName(name);
    if (split && ascii(name)) [ustarPrefix, ustarName] = split;
    else {
      pax.push(['path', name]);
      ustarName = asciiFallback(name).slice(0, 100);
    }
  }
  if (Buffer.byteLength(linkname) > 100 || !ascii(linkname)) pax.push(['linkpath', linkname]);
  if (entry.size > 0o77777777777) pax.push(['size', String(entry.size)]);
  if (pax.length > 0) {
    const body = Buffer.from(pax.map(([key, value]) => paxRecord(key, value)).join(''), 'utf8');
    yield headerBlock({ name: asciiFallback(`PaxHeaders/${ustarName}`).slice(0, 100), prefix: '', mode: 0o644, size: body.length, type: 'x', linkname: '' });
    yield body;
    const padding = (BLOCK - (body.length % BLOCK)) % BLOCK;
    if (padding) yield Buffer.alloc(padding);
  }
  const type = entry.type === 'file' ? '0' : entry.type === 'directory' ? '5' : '2';
  const mode = entry.type === 'symlink' ? 0o777 : entry.type === 'directory' || entry.executable ? 0o755 : 0o644;
  yield headerBlock({
    name: ustarName,
    prefix: ustarPrefix,
    mode,
    size: entry.type === 'file' ? Math.min(entry.size, 0o77777777777) : 0,
    type,
    linkname: Buffer.byteLength(linkname) > 100 || !ascii(linkname) ? asciiFallback(linkname).slice(0, 100) : linkname,
  });
}

function splitUstarName(name: string): [string, string] | undefined {
  // prefix (≤155 bytes) + "/" + name (≤100 bytes), split at a slash
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] !== '/') continue;
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest !== '') return [prefix, rest];
  }
  return undefined;
}

function asciiFallback(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '_');
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body) + 1;
  while (String(length).length + Buffer.byteLength(body) !== length) length = String(length).length + Buffer.byteLength(body);
  return `${length}${body}`;
}

function headerBlock(fields: { name: string; prefix: string; mode: number; size: number; type: string; linkname: string }): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(fields.name, 0, 100, 'utf8');
  writeOctal(block, 100, 8, fields.mode);
  writeOctal(block, 108, 8, 0); // uid
  writeOctal(block, 116, 8, 0); // gid
  writeOctal(block, 124, 12, fields.size);
  writeOctal(block, 136, 12, FIXED_MTIME);
  block.fill(0x20, 148, 156); // checksum placeholder: spaces
  block.write(fields.type, 156, 1, 'ascii');
  block.write(fields.linkname, 157, 100, 'utf8');
  block.write('ustar\0', 257, 6, 'ascii');
  block.write('00', 263, 2, 'ascii');
  block.write('root', 265, 32, 'ascii');
  block.write('root', 297, 32, 'ascii');
  writeOctal(block, 329, 8, 0); // devmajor
  writeOctal(block, 337, 8, 0); // devminor
  block.write(fields.prefix, 345, 155, 'utf8');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i]!;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return block;
}

function writeOctal(block: Buffer, offset: number, length: number, value: number): void {
  block.write(value.toString(8).padStart(length - 1, '0') + '\0', offset, length, 'ascii');
}
