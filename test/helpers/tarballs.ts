import { gzipSync } from 'node:zlib';

/** Raw tar entries, malicious ones included: the server must refuse what our packer never makes. */
export interface RawEntry {
  name: string;
  /** 'x': a pax extended header for the next entry (see `paxHeader`). */
  type?: '0' | '1' | '2' | '3' | '4' | '5' | '6' | 'x';
  body?: string | Buffer;
  linkname?: string;
  mode?: number;
  /** Claimed size, when it should differ from the body's. */
  size?: number;
}

function header(entry: RawEntry, size: number): Buffer {
  const block = Buffer.alloc(512);
  block.write(entry.name, 0, 100, 'utf8');
  block.write((entry.mode ?? 0o644).toString(8).padStart(7, '0') + '\0', 100, 8, 'ascii');
  block.write('0000000\0', 108, 8, 'ascii');
  block.write('0000000\0', 116, 8, 'ascii');
  block.write(size.toString(8).padStart(11, '0') + '\0', 124, 12, 'ascii');
  block.write('00000000000\0', 136, 12, 'ascii');
  block.fill(0x20, 148, 156);
  block.write(entry.type ?? '0', 156, 1, 'ascii');
  block.write(entry.linkname ?? '', 157, 100, 'utf8');
  block.write('ustar\0', 257, 6, 'ascii');
  block.write('00', 263, 2, 'ascii');
  if (entry.type === '3' || entry.type === '4') {
    block.write('0000001\0', 329, 8, 'ascii');
    block.write('0000003\0', 337, 8, 'ascii');
  }
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return block;
}

export function rawTar(entries: RawEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const body = entry.body === undefined ? Buffer.alloc(0) : Buffer.from(entry.body);
    parts.push(header(entry, entry.size ?? body.length));
    if (body.length) {
      parts.push(body);
      parts.push(Buffer.alloc((512 - (body.length % 512)) % 512));
    }
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** A pax header giving the next entry a name longer than ustar's 100 bytes. */
export function paxHeader(records: Record<string, string>): RawEntry {
  let body = '';
  for (const [key, value] of Object.entries(records)) {
    const line = ` ${key}=${value}\n`;
    // The length prefix counts itself: grow it until the total is stable.
    let length = Buffer.byteLength(line) + 1;
    while (String(length).length + Buffer.byteLength(line) !== length) length = String(length).length + Buffer.byteLength(line);
    body += `${length}${line}`;
  }
  return { name: 'PaxHeader', type: 'x', body };
}

export function rawTarGz(entries: RawEntry[]): Buffer {
  return gzipSync(rawTar(entries));
}

const MANIFEST = '[main]\nname = "p"\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n';
/** A valid .cycleswap/ project, to which the malicious entries are added. */
export const VALID_PROJECT: RawEntry[] = [
  { name: '.cycleswap/', type: '5' },
  { name: '.cycleswap/manifest.toml', body: MANIFEST },
  { name: '.cycleswap/run.sh', body: 'echo hi\n' },
  { name: '.cycleswap/build.sh', body: 'true\n' },
];

/** Each refused with 400, leaving nothing behind. */
export const MALICIOUS_TARBALLS: Array<{ name: string; tarball: () => Buffer; reason: RegExp }> = [
  { name: 'path traversal with ..', tarball: () => rawTarGz([...VALID_PROJECT, { name: '../evil.txt', body: 'x' }]), reason: /escapes the project/ },
  { name: 'nested traversal a/../../x', tarball: () => rawTarGz([...VALID_PROJECT, { name: 'a/../../evil.txt', body: 'x' }]), reason: /escapes the project/ },
  { name: 'absolute path', tarball: () => rawTarGz([...VALID_PROJECT, { name: '/tmp/cycle-evil.txt', body: 'x' }]), reason: /absolute path/ },
  { name: 'windows drive path', tarball: () => rawTarGz([...VALID_PROJECT, { name: 'C:\\evil.txt', body: 'x' }]), reason: /absolute path/ },
  {
    name: 'symlink to an absolute path',
    tarball: () => rawTarGz([...VALID_PROJECT, { name: 'link', type: '2', linkname: '/etc/passwd' }]),
    reason: /absolute path/,
  },
  {
    name: 'symlink out with ..',
    tarball: () => rawTarGz([...VALID_PROJECT, { name: 'sub/link', type: '2', linkname: '../../outside' }]),
    reason: /outside the project/,
  },
  {
    name: 'symlink then a file through it',
    tarball: () => rawTarGz([...VALID_PROJECT, { name: 'dir', type: '2', linkname: '.cycleswap' }, { name: 'dir/pwned.txt', body: 'x' }]),
    reason: /through the symlink/,
  },
  { name: 'hard link out', tarball: () => rawTarGz([...VALID_PROJECT, { name: 'hl', type: '1', linkname: '/etc/passwd' }]), reason: /hard link/ },
  { name: 'hard link to a missing file', tarball: () => rawTarGz([...VALID_PROJECT, { name: 'hl', type: '1', linkname: 'nope.txt' }]), reason: /hard link/ },
  { name: 'character device', tarball: () => rawTarGz([...VALID_PROJECT, { name: 'null', type: '3' }]), reason: /character device/ },
  { name: 'block device', tarball: () => rawTarGz([...VALID_PROJECT, { name: 'disk', type: '4' }]), reason: /block device/ },
  { name: 'fifo', tarball: () => rawTarGz([...VALID_PROJECT, { name: 'pipe', type: '6' }]), reason: /fifo/ },
  {
    name: 'too many files',
    tarball: () => rawTarGz([...VALID_PROJECT, ...Array.from({ length: 60 }, (_, i) => ({ name: `many/${i}.txt`, body: 'x' }))]),
    reason: /too many entries/,
  },
  {
    name: 'too many bytes (a gzip bomb)',
    tarball: () => rawTarGz([...VALID_PROJECT, { name: 'zeros.bin', body: Buffer.alloc(3 << 20) }]),
    reason: /too large/,
  },
  { name: 'not a tarball', tarball: () => gzipSync(Buffer.from('hello, this is not a tar archive at all'.repeat(30))), reason: /not a valid/ },
];
