import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { extractTarball, UnsafeTarball, type ExtractLimits } from '../../src/server/extract.js';
import { tempDir } from '../helpers/context.js';
import { paxHeader, rawTar, rawTarGz, VALID_PROJECT, type RawEntry } from '../helpers/tarballs.js';
import { settlesWithin, snapshotTree } from '../helpers/sandbox.js';
import { startServerProcess, type ServerProcess } from '../helpers/server.js';

/*
 * Issue 11, case 1: a pushed tarball must never create, change or expose anything outside the
 * folder it is extracted into. Each extraction happens in <base>/tree beside <base>/outside,
 * which must stay exactly as it was.
 */

let base: string;
let tree: string;
let outsideBefore: Record<string, string>;
const LIMITS: ExtractLimits = { maxBytes: 4 << 20, maxFiles: 1000 };

beforeEach(async () => {
  base = await tempDir('cycle-sec-extract-');
  tree = path.join(base, 'tree');
  await fs.mkdir(path.join(base, 'outside'));
  await fs.writeFile(path.join(base, 'outside', 'victim.txt'), 'original\n');
  outsideBefore = await snapshotTree(base);
});
afterEach(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

/** The gzipped archive as a stream of small chunks, as a socket or a file delivers it. */
function chunked(gz: Buffer, size = 16 * 1024): Readable {
  const parts: Buffer[] = [];
  for (let at = 0; at < gz.length; at += size) parts.push(gz.subarray(at, at + size));
  return Readable.from(parts);
}

const extract = (entries: RawEntry[], limits: ExtractLimits = LIMITS) =>
  settlesWithin(20_000, 'extractTarball', extractTarball(chunked(rawTarGz(entries)), tree, limits));

async function expectRefused(entries: RawEntry[], reason: RegExp, limits: ExtractLimits = LIMITS): Promise<void> {
  const outcome = await extract(entries, limits).then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(outcome, 'the archive was accepted').toBeInstanceOf(UnsafeTarball);
  expect((outcome as Error).message).toMatch(reason);
  await expectOutsideUntouched();
  await expect(fs.access(tree), 'the refused tree was left behind').rejects.toThrow();
}

async function expectOutsideUntouched(): Promise<void> {
  expect(await snapshotTree(base, new Set(['tree']))).toEqual(outsideBefore);
}

describe('extraction: links are resolved on disk, not on paper', () => {
  it.each<[string, RawEntry[], RegExp]>([
    [
      // l -> . makes l/l the tree itself; ".." from there leaves it, though "l/l/../outside"
      // normalizes to "l/outside".
      'a symlink whose ".."s cancel its links on paper but climb out on disk',
      [
        { name: 'l', type: '2', linkname: '.' },
        { name: 'f', type: '2', linkname: 'l/l/../outside/victim.txt' },
      ],
      /symlink "f" points outside/,
    ],
    [
      'the same chain one folder down, and through a chain of links',
      [
        { name: 'a/', type: '5' },
        { name: 'a/up', type: '2', linkname: '..' },
        { name: 'a/l', type: '2', linkname: 'up/a' },
        { name: 'a/f', type: '2', linkname: 'l/l/l/../../outside' },
      ],
      /points outside/,
    ],
    [
      // "m/../outside" is "outside" on paper; once m -> . exists, m/.. is the tree's parent.
      'a link through a folder that is missing now but could become a link later',
      [
        { name: 'a', type: '2', linkname: 'm/../outside/victim.txt' },
        { name: 'm', type: '2', linkname: '.' },
      ],
      /symlink "a" points outside/,
    ],
  ])('refuses %s', async (_case, entries, reason) => {
    await expectRefused(entries, reason);
  });

  it('never writes a host file through a link made by an earlier entry of the same name', async () => {
    for (let round = 0; round < 5; round++) {
      await expectRefused(
        [
          { name: 'l', type: '2', linkname: '.' },
          { name: 'f', type: '2', linkname: 'l/l/../outside/victim.txt' },
          { name: 'f', body: 'pwned\n' },
          { name: 'g', type: '2', linkname: 'l/l/../outside/new.txt' },
          { name: 'g', body: 'pwned\n' },
        ],
        /points outside/,
      );
    }
  });

  it('refuses a later entry whose name is already a symlink or a folder, whatever it is', async () => {
    await expectRefused(
      [
        { name: 'sub/', type: '5' },
        { name: 'a', type: '2', linkname: 'sub' },
        { name: 'a', body: 'x' },
      ],
      /"a" is already a symlink/,
    );
    await expectRefused(
      [
        { name: 'a', type: '2', linkname: 'x' },
        { name: 'a', type: '2', linkname: 'y' },
      ],
      /"a" is already a symlink/,
    );
    await expectRefused(
      [
        { name: 'd/', type: '5' },
        { name: 'd', body: 'x' },
      ],
      /"d" is already a folder/,
    );
    await expectRefused(
      [
        { name: 'f', body: 'x' },
        { name: 'f/', type: '5' },
      ],
      /"f" is already a file/,
    );
  });

  it('refuses an entry under a file or a symlink', async () => {
    await expectRefused(
      [
        { name: 'f', body: 'x' },
        { name: 'f/g', body: 'y' },
      ],
      /goes through "f", which is a file/,
    );
    await expectRefused(
      [
        { name: 'l', type: '2', linkname: '.' },
        { name: 'l/g', body: 'y' },
      ],
      /goes through the symlink "l"/,
    );
  });

  it('refuses hard links to links, folders, later or outside paths', async () => {
    await expectRefused(
      [
        { name: 'f', body: 'x' },
        { name: 's', type: '2', linkname: 'f' },
        { name: 'h', type: '1', linkname: 's' },
      ],
      /hard link "h"/,
    );
    await expectRefused(
      [
        { name: 'd/', type: '5' },
        { name: 'h', type: '1', linkname: 'd' },
      ],
      /hard link "h"/,
    );
    await expectRefused(
      [
        { name: 'h', type: '1', linkname: 'f' },
        { name: 'f', body: 'x' },
      ],
      /hard link "h"/,
    );
    await expectRefused(
      [
        { name: 'l', type: '2', linkname: '.' },
        { name: 'f', body: 'x' },
        { name: 'h', type: '1', linkname: 'l/f' },
      ],
      /hard link "h"/,
    );
    await expectRefused([{ name: 'h', type: '1', linkname: '../outside/victim.txt' }], /hard link "h"/);
  });

  it('keeps what is safe: links inside, links to later entries, folders declared twice, a file replaced by a later one', async () => {
    await extract([
      { name: 'src/', type: '5' },
      { name: 'src/up', type: '2', linkname: '..' },
      { name: 'src/later', type: '2', linkname: '../zz/file.txt' },
      { name: 'src/main.py', body: 'print(1)\n' },
      { name: 'src/', type: '5' },
      { name: 'src/main.py', body: 'print(2)\n' },
      { name: 'src/copy.py', type: '1', linkname: 'src/main.py' },
      { name: 'zz/file.txt', body: 'z\n' },
    ]);
    expect(await fs.readFile(path.join(tree, 'src/up/src/main.py'), 'utf8')).toBe('print(2)\n');
    expect(await fs.readFile(path.join(tree, 'src/later'), 'utf8')).toBe('z\n');
    expect(await fs.readFile(path.join(tree, 'src/copy.py'), 'utf8')).toBe('print(2)\n');
    await expectOutsideUntouched();
  });
});

describe('extraction: limits are counted before anything is written', () => {
  it('counts the bytes of hard links', async () => {
    const big = randomBytes(600 * 1024);
    const links = Array.from({ length: 8 }, (_, i): RawEntry => ({ name: `h${i}`, type: '1', linkname: 'big.bin' }));
    await expectRefused([{ name: 'big.bin', body: big }, ...links], /too large: more than 4194304 bytes/);
  });

  it('counts entries that name the root itself', async () => {
    const roots = Array.from({ length: 200 }, (): RawEntry => ({ name: './', type: '5' }));
    await expectRefused(roots, /too many entries: more than 50/, { maxBytes: 1 << 20, maxFiles: 50 });
  });

  it('refuses a tar stream far longer than its entries need (a pax-header bomb)', async () => {
    // Pax headers are not entries: only the length of the tar stream bounds them.
    const padding = paxHeader({ comment: 'a'.repeat(512 * 1024) });
    await expectRefused([...Array.from({ length: 40 }, () => padding), { name: 'a.txt', body: 'a' }], /too large: more than \d+ bytes of tar/, {
      maxBytes: 1 << 20,
      maxFiles: 10,
    });
  });

  it('reads nothing past the end-of-archive marker', async () => {
    const tar = rawTar([{ name: 'a.txt', body: 'a' }]);
    const gz = gzipSync(Buffer.concat([tar, Buffer.alloc(128 << 20)]));
    const before = process.cpuUsage();
    await expect(settlesWithin(20_000, 'extractTarball', extractTarball(chunked(gz), tree, LIMITS))).resolves.toEqual({ files: 1, bytes: 1 });
    const used = process.cpuUsage(before);
    // Inflating the 128 MiB of zeros alone takes about half a second of CPU.
    expect((used.user + used.system) / 1e6).toBeLessThan(0.25);
    expect(await fs.readFile(path.join(tree, 'a.txt'), 'utf8')).toBe('a');
  });

  it('takes an archive of nothing but its end marker (an empty folder, as GNU tar writes it) and refuses one cut inside the marker', async () => {
    // GNU tar's archive of an empty folder: two zero blocks, padded to its 10 KiB record.
    await expect(settlesWithin(20_000, 'extractTarball', extractTarball(chunked(gzipSync(Buffer.alloc(10_240))), tree, LIMITS))).resolves.toEqual({
      files: 0,
      bytes: 0,
    });
    expect(await fs.readdir(tree)).toEqual([]);
    await fs.rm(tree, { recursive: true });
    // One zero block is not an end marker: the archive is cut off.
    await expect(extractTarball(chunked(gzipSync(Buffer.alloc(512))), tree, LIMITS)).rejects.toThrow(UnsafeTarball);
    await expect(fs.stat(tree)).rejects.toThrow();
  });

  it('stops at the first entry past the limit', async () => {
    const many = Array.from({ length: 5000 }, (_, i): RawEntry => ({ name: `f${i}`, body: '' }));
    await expectRefused(many, /too many entries: more than 10/, { maxBytes: 1 << 20, maxFiles: 10 });
  });
});

describe('extraction: the cost of an entry does not grow with the links before it', () => {
  it('10,000 links then 100,000 more entries: seconds of CPU, not a quadratic freeze', async () => {
    // The old check compared every entry with every earlier link (100k links froze a server for
    // 25 s). Repeated folder entries cost the extractor almost nothing, so only such a
    // comparison could make this slow. CPU time, unlike wall time, hardly depends on the load.
    const links = Array.from({ length: 10_000 }, (_, i): RawEntry => ({ name: `links/l${i}`, type: '2', linkname: `../d/f${i}` }));
    const folders = Array.from({ length: 100_000 }, (): RawEntry => ({ name: 'd/', type: '5' }));
    const gz = rawTarGz([{ name: 'links/', type: '5' }, ...links, ...folders]);
    const before = process.cpuUsage();
    await settlesWithin(120_000, 'extractTarball', extractTarball(chunked(gz), tree, { maxBytes: 1 << 20, maxFiles: 200_000 }));
    const used = process.cpuUsage(before);
    expect((used.user + used.system) / 1e6).toBeLessThan(12);
    expect((await fs.readdir(path.join(tree, 'links'))).length).toBe(10_000);
  }, 180_000);
});

describe('extraction: every failure settles and cleans up', () => {
  const bigFile: RawEntry = { name: 'big.bin', body: randomBytes(2 << 20) };

  it('a truncated gzip is refused, not left hanging', async () => {
    const gz = rawTarGz([{ name: 'a.txt', body: 'a' }, bigFile]);
    const outcome = await settlesWithin(20_000, 'extractTarball', extractTarball(chunked(gz.subarray(0, gz.length >> 1)), tree, LIMITS)).catch(
      (error: unknown) => error,
    );
    expect(outcome).toBeInstanceOf(UnsafeTarball);
    expect((outcome as Error).message).toMatch(/not a valid \.tar\.gz/);
    await expect(fs.access(tree)).rejects.toThrow();
  });

  it('a refusal while a large file is still arriving settles', async () => {
    await expectRefused([{ name: 'a', type: '2', linkname: 'x' }, { name: 'a', type: '2', linkname: 'y' }, bigFile], /already a symlink/);
  });

  it('a name the filesystem cannot hold is refused by name, without a host path', async () => {
    const long = 'n'.repeat(300);
    const outcome = await extract([paxHeader({ path: long }), { name: 'short', body: 'x' }]).catch((error: unknown) => error);
    expect(outcome).toBeInstanceOf(UnsafeTarball);
    expect((outcome as Error).message).toMatch(/name too long/);
    expect((outcome as Error).message).not.toContain(base);
  });

  it("data that is not gzip is always the client's fault (zlib's error reaches the loop or pipeline first: a race), 200 times in a row", async () => {
    const plain = rawTar(VALID_PROJECT);
    const misread: unknown[] = [];
    for (let attempt = 0; attempt < 200; attempt++) {
      const outcome = await extractTarball(Readable.from([plain]), path.join(base, `plain-${attempt}`), LIMITS).catch((error: unknown) => error);
      if (!(outcome instanceof UnsafeTarball)) misread.push(outcome);
    }
    expect(misread).toEqual([]);
  });

  it('a failing source settles and removes the tree', async () => {
    const gz = rawTarGz([{ name: 'a.txt', body: 'a' }, bigFile]);
    const failing = Readable.from(
      (async function* () {
        yield gz.subarray(0, gz.length >> 1);
        throw new Error('the connection was reset');
      })(),
    );
    await expect(settlesWithin(20_000, 'extractTarball', extractTarball(failing, tree, LIMITS))).rejects.toThrow(/connection was reset/);
    await expect(fs.access(tree)).rejects.toThrow();
  });
});

describe('extraction through a real `cycle server` push', () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServerProcess({ workers: 1 });
  });
  afterAll(async () => {
    await server.stop('SIGKILL'); // how it stops is not under test here, and SIGTERM takes seconds
    await fs.rm(server.dataDir, { recursive: true, force: true });
  });

  const push = async (name: string, body: Buffer): Promise<{ status: number; body: { error?: { code: string; message: string } } }> => {
    const response = await settlesWithin(
      30_000,
      'the push',
      fetch(`${server.url}/api/v1/projects/${name}/push`, { method: 'POST', headers: { authorization: `Bearer ${server.token}` }, body }),
    );
    return { status: response.status, body: (await response.json()) as { error?: { code: string; message: string } } };
  };

  it('refuses a link that reaches the server token, and never writes through one', async () => {
    const token = await fs.readFile(path.join(server.dataDir, 'token'), 'utf8');
    // The tree is extracted in <data>/tmp/tree-<id>: l/l/l is the tree, ../.. the data folder.
    const reach = { name: 'leak', type: '2', linkname: 'l/l/l/../../token' } as const;
    const read = await push('evil', rawTarGz([...VALID_PROJECT, { name: 'l', type: '2', linkname: '.' }, reach]));
    expect(read.status).toBe(400);
    expect(read.body.error?.message).toMatch(/symlink "leak" points outside/);
    for (let round = 0; round < 5; round++) {
      const write = await push('evil', rawTarGz([...VALID_PROJECT, { name: 'l', type: '2', linkname: '.' }, reach, { name: 'leak', body: 'attacker\n' }]));
      expect(write.status).toBe(400);
    }
    expect(await fs.readFile(path.join(server.dataDir, 'token'), 'utf8')).toBe(token);
    expect(await fs.readdir(path.join(server.dataDir, 'tmp'))).toEqual([]);
  });

  it('answers a truncated gzip with 400 and keeps nothing', async () => {
    const gz = rawTarGz([...VALID_PROJECT, { name: 'big.bin', body: randomBytes(2 << 20) }]);
    const answer = await push('cut', gz.subarray(0, gz.length >> 1));
    expect(answer.status).toBe(400);
    expect(answer.body.error?.code).toBe('unsafe_tarball');
    expect(await fs.readdir(path.join(server.dataDir, 'tmp'))).toEqual([]);
  });

  it('answers an over-long name with 400 and no host path', async () => {
    const answer = await push('long', rawTarGz([...VALID_PROJECT, paxHeader({ path: `src/${'n'.repeat(300)}.py` }), { name: 'x', body: 'x' }]));
    expect(answer.status).toBe(400);
    expect(answer.body.error?.message).toMatch(/name too long/);
    expect(JSON.stringify(answer.body)).not.toContain(server.dataDir);
    expect(await fs.readdir(path.join(server.dataDir, 'tmp'))).toEqual([]);
  });

  it('a plain tar (not gzipped) is refused as not a .tar.gz', async () => {
    const answer = await push('plain', rawTar(VALID_PROJECT));
    expect(answer.status).toBe(400);
    expect(answer.body.error?.message).toMatch(/not a valid \.tar\.gz/);
  });
});

describe('the server finds the project at the root of the tarball only', () => {
  let outer: string;
  afterEach(async () => {
    await fs.rm(outer, { recursive: true, force: true });
  });

  it('a push without a manifest is a 422, never the project around the data folder', async () => {
    // The data folder sits inside a valid project: an upward search from the extracted tree
    // would find it and publish the server's own surroundings.
    outer = await tempDir('cycle-sec-outer-');
    await fs.mkdir(path.join(outer, '.cycleswap'));
    for (const entry of VALID_PROJECT.filter((e) => e.body !== undefined)) await fs.writeFile(path.join(outer, entry.name), entry.body!);
    const server = await startServerProcess({ dataDir: path.join(outer, 'data'), workers: 1 });
    try {
      const response = await fetch(`${server.url}/api/v1/projects/nomanifest/push`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.token}` },
        body: rawTarGz([{ name: 'main.py', body: 'print(1)\n' }]),
      });
      const body = (await response.json()) as { error: { code: string; message: string } };
      expect(response.status).toBe(422);
      expect(body.error.code).toBe('invalid_project');
      expect(body.error.message).toMatch(/no project at the root of the tarball/);
      expect(body.error.message).not.toContain(outer);
    } finally {
      await server.stop('SIGKILL');
    }
  });

  it('the server empties tmp/ when it starts', async () => {
    outer = await tempDir('cycle-sec-tmp-');
    const dataDir = path.join(outer, 'data');
    await fs.mkdir(path.join(dataDir, 'tmp', 'tree-stale', 'sub'), { recursive: true });
    await fs.writeFile(path.join(dataDir, 'tmp', 'upload-stale.tar.gz'), gzipSync('x'));
    const server = await startServerProcess({ dataDir, workers: 1 });
    try {
      expect(await fs.readdir(path.join(dataDir, 'tmp'))).toEqual([]);
    } finally {
      await server.stop('SIGKILL');
    }
  });
});
