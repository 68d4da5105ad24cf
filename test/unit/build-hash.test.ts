import fs from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildHash, collectBuildInputs, encodeBuildInputs, explainChanges, jsonQuote } from '../../src/build-hash/hash.js';
import { loadProject, type CycleswapProject } from '../../src/project/load.js';
import { run as hashCommand } from '../../src/commands/project/hash.js';
import { cycleswapProject, fakeContext, tempDir, writeFiles } from '../helpers/context.js';
import { sha256Hex } from '../../src/util/fs.js';
import { StatCache } from '../../src/pack/stat-cache.js';

const manifest = (buildFiles: string[]): string => `[main]
name = "demo"
build_files = ${JSON.stringify(buildFiles)}

[ubuntu]
version = "24.04"

[job]
email_on_success = false
email_on_failure = false
`;

interface InputFile {
  path: string;
  bytes: Uint8Array;
  executable: boolean;
}

async function makeProject(
  files: InputFile[],
  options: { order?: number[]; mtime?: Date; buildScript?: string; extra?: Record<string, string> } = {},
): Promise<string> {
  const root = await tempDir();
  await writeFiles(root, {
    '.cycleswap/manifest.toml': manifest(files.map((f) => f.path)),
    '.cycleswap/run.sh': 'echo run\n',
    '.cycleswap/build.sh': options.buildScript ?? 'echo build\n',
    ...options.extra,
  });
  const order = options.order ?? files.map((_, i) => i);
  for (const index of order) {
    const file = files[index]!;
    const target = path.join(root, file.path);
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.writeFile(target, file.bytes);
    await fs.chmod(target, file.executable ? 0o755 : 0o644);
    if (options.mtime) await fs.utimes(target, options.mtime, options.mtime);
  }
  // An old build.sh too, so that a warm run finds every input in the stat cache (and its memo).
  if (options.mtime) await fs.utimes(path.join(root, '.cycleswap/build.sh'), options.mtime, options.mtime);
  return root;
}

/** With `now`, the stat cache's clock (a later one remembers files just written: their ctime is now). */
async function hashOf(root: string, useCache = true, now?: () => number): Promise<string> {
  const project = (await loadProject(root)) as CycleswapProject;
  return (await collectBuildInputs(project, { useCache, ...(now ? { now } : {}) })).hash;
}

const fiveSecondsOn = (): number => Date.now() + 5000;

// Names as people write them, and names whose order is easy to get wrong: emoji sharing a
// high surrogate (😀 😁), characters from U+E000 up, accented letters.
const segment = fc.oneof(
  fc.stringMatching(/^[a-z0-9_][a-z0-9_.-]{0,8}$/).filter((s) => s !== '.' && s !== '..' && !s.endsWith('.')),
  fc.string({ unit: fc.constantFrom('a', '\u{1f600}', '\u{1f601}', '\u{10000}', '\uffee', '\ue000', 'é', '-'), minLength: 1, maxLength: 4 }),
);
const filePath = fc.array(segment, { minLength: 1, maxLength: 3 }).map((parts) => parts.join('/'));
const inputFiles = fc
  .uniqueArray(fc.record({ path: filePath, bytes: fc.uint8Array({ maxLength: 64 }), executable: fc.boolean() }), {
    selector: (f) => f.path,
    minLength: 1,
    maxLength: 6,
  })
  // a path cannot be both a file and a folder
  .filter((files) => files.every((a) => files.every((b) => a === b || !b.path.startsWith(a.path + '/'))));

describe('build hash properties', () => {
  it('does not depend on file creation order or mtimes', async () => {
    await fc.assert(
      fc.asyncProperty(inputFiles, fc.integer({ min: 0, max: 1e9 }), async (files, seed) => {
        const reversed = files.map((_, i) => files.length - 1 - i);
        const a = await makeProject(files);
        const b = await makeProject(files, { order: reversed, mtime: new Date(1_600_000_000_000 + seed) });
        expect(await hashOf(a)).toBe(await hashOf(b));
      }),
      { numRuns: 25 },
    );
  });

  it('changes when any byte, path or exec bit of an input changes (stat cache on, mtime kept)', async () => {
    const oldTime = new Date('2020-01-01T00:00:00Z');
    await fc.assert(
      fc.asyncProperty(inputFiles, fc.nat(), fc.constantFrom('byte', 'path', 'exec', 'script'), async (files, pick, what) => {
        const root = await makeProject(files, { mtime: oldTime });
        const before = await hashOf(root, true, fiveSecondsOn);
        expect(await hashOf(root, true, fiveSecondsOn)).toBe(before); // warm cache, same answer (kept beside the entries)
        const file = files[pick % files.length]!;
        const target = path.join(root, file.path);
        if (what === 'byte') {
          const bytes = Buffer.from(file.bytes.length ? file.bytes : [0]);
          bytes[pick % bytes.length] = (bytes[pick % bytes.length]! + 1) % 256;
          await fs.writeFile(target, bytes);
          await fs.utimes(target, oldTime, oldTime); // same size and mtime: only ctime tells
        } else if (what === 'exec') {
          await fs.chmod(target, file.executable ? 0o644 : 0o755);
        } else if (what === 'script') {
          await fs.appendFile(path.join(root, '.cycleswap/build.sh'), '#\n');
        } else {
          const renamed = `${file.path}-renamed`;
          await fs.rename(target, path.join(root, renamed));
          const list = files.map((f) => (f === file ? renamed : f.path));
          await fs.writeFile(path.join(root, '.cycleswap/manifest.toml'), manifest(list));
        }
        expect(await hashOf(root, true, fiveSecondsOn)).not.toBe(before);
      }),
      { numRuns: 40 },
    );
  });

  it('ignores files outside the inputs', async () => {
    await fc.assert(
      fc.asyncProperty(inputFiles, fc.string({ maxLength: 20 }), async (files, content) => {
        const root = await makeProject(files);
        const before = await hashOf(root);
        await writeFiles(root, { 'src/unrelated.py': content, '.cycleswap/run.sh': `echo ${content.length}\n`, 'notes.md': content });
        expect(await hashOf(root)).toBe(before);
      }),
      { numRuns: 20 },
    );
  });
});

describe('build hash encoding', () => {
  it('is exactly the example in docs/build-hash.md', async () => {
    const doc = await fs.readFile(path.join(import.meta.dirname, '..', '..', 'docs', 'build-hash.md'), 'utf8');
    const example = /<!-- checked by test\/unit\/build-hash.test.ts -->\n```text\n([\s\S]*?)```/.exec(doc)![1]!;
    const documentedHash = /is\n`([0-9a-f]{64})`/.exec(doc)![1]!;
    const root = await makeProject([{ path: 'pyproject.toml', bytes: Buffer.from('[project]\n'), executable: false }], { buildScript: 'echo hi\n' });
    const project = (await loadProject(root)) as CycleswapProject;
    const { inputs, hash } = await collectBuildInputs(project);
    expect(encodeBuildInputs(inputs)).toBe(example);
    expect(hash).toBe(sha256Hex(example));
    expect(hash).toBe(documentedHash);
  });

  it('quotes odd path names as JSON and sorts by bytes', () => {
    const text = encodeBuildInputs({
      format: 'cycle-build-hash/v1',
      image: 'ubuntu:24.04',
      buildScript: { sha256: 'a'.repeat(64), size: 1 },
      files: [{ path: 'tab\there "q"', executable: true, size: 0, sha256: 'b'.repeat(64) }],
    });
    expect(text.split('\n')[3]).toBe(`file\t755\t${'b'.repeat(64)}\t"tab\\there \\"q\\""`);
  });

  it('quotes each path exactly as JSON.stringify does, for any text (lone surrogates, controls, quotes)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }), fc.string()), (text) => {
        expect(jsonQuote(text)).toBe(JSON.stringify(text));
      }),
      { numRuns: 3000 },
    );
    for (const text of ['data/f1.bin', 'a"b', 'back\\slash', 'tab\there', '\u0000', '\u007f\u2028', '\ud800', 'é😀'])
      expect(jsonQuote(text)).toBe(JSON.stringify(text));
  });

  it('hashes the same bytes as the whole encoding, across the chunks it is hashed in', () => {
    // 0, 1, 255, 256, 257 and 600 files: each side of the 256-line chunks buildHash writes.
    for (const count of [0, 1, 255, 256, 257, 600]) {
      const inputs = {
        format: 'cycle-build-hash/v1',
        image: 'ubuntu:24.04',
        buildScript: { sha256: 'a'.repeat(64), size: 1 },
        files: Array.from({ length: count }, (_, i) => ({ path: `d/é ${i}`, executable: i % 3 === 0, size: i, sha256: (i % 16).toString(16).repeat(64) })),
      };
      const text = encodeBuildInputs(inputs);
      expect(text.split('\n')).toHaveLength(4 + count);
      expect(buildHash(inputs)).toBe(sha256Hex(text));
    }
  });

  it('gives the same hash as before, cold and warm, for a tree of odd names, exec bits and 600+ files', async () => {
    // The value was computed by the code before the hash was read straight from the stat table
    // (it made a file object per file first): the encoding must not have moved by a byte.
    const before = 'ea608ef55bcdeae2be781ed6953f520a59a98f382b2a3cdc531b9bf02289f858';
    const root = await tempDir();
    const write = async (file: string, content: string, mode = 0o644): Promise<void> => {
      await fs.mkdir(path.dirname(path.join(root, file)), { recursive: true });
      await fs.writeFile(path.join(root, file), content);
      await fs.chmod(path.join(root, file), mode);
    };
    await write('.cycleswap/manifest.toml', manifest(['deps', 'setup.py', 'deps/a.txt']));
    await write('.cycleswap/run.sh', 'echo run\n');
    await write('.cycleswap/build.sh', 'pip install -e .\n');
    await write('setup.py', 'from setuptools import setup\n', 0o755);
    await write('deps/a.txt', '');
    for (let i = 0; i < 600; i++) await write(`deps/d${i % 7}/f${i}.txt`, `file ${i}\n`.repeat(i % 5), i % 11 === 0 ? 0o755 : 0o644);
    for (const name of ['é.txt', 'tab\there "q".txt', 'back\\slash', '😀', 'a-b', 'a.b', 'a/b']) await write(`deps/odd/${name}`, name);
    // A clock 10 s ahead: the files count as settled, so the second run answers from the stat cache.
    const now = (): number => Date.now() + 10_000;
    const cold = await collectBuildInputs((await loadProject(root)) as CycleswapProject, { now });
    const warm = await collectBuildInputs((await loadProject(root)) as CycleswapProject, { now });
    expect(cold.cache.misses).toBe(610); // 609 build files and build.sh
    expect(warm.cache).toEqual({ hits: 610, misses: 0 });
    expect(cold.hash).toBe(before);
    expect(warm.hash).toBe(before);
    // The file list, made when asked for, encodes to the bytes hashed, and is kept in JSON (a build's record).
    expect(sha256Hex(encodeBuildInputs(warm.inputs))).toBe(before);
    expect(buildHash(JSON.parse(JSON.stringify(warm.inputs)))).toBe(before);
    expect(warm.inputs.files).toHaveLength(609);
    expect(warm.inputs.files.find((file) => file.path === 'setup.py')).toMatchObject({ executable: true, size: 29 });
  });

  it('expands folders and lists each file once', async () => {
    const root = await cycleswapProject({ 'deps/a.txt': 'a', 'deps/sub/b.txt': 'b', 'one.txt': '1' });
    await fs.writeFile(path.join(root, '.cycleswap/manifest.toml'), manifest(['deps', 'one.txt', 'deps/a.txt']));
    const project = (await loadProject(root)) as CycleswapProject;
    const { inputs } = await collectBuildInputs(project);
    expect(inputs.files.map((f) => f.path)).toEqual(['deps/a.txt', 'deps/sub/b.txt', 'one.txt']);
    // Each absolute path is made from the root when asked for: the same string path.join gives.
    for (const file of project.buildFiles) expect(file.absolute).toBe(path.join(root, file.path));
  });
});

describe('explain', () => {
  it('lists added, removed, modified files, the image and build.sh', () => {
    const base = {
      format: 'cycle-build-hash/v1',
      image: 'ubuntu:24.04',
      buildScript: { sha256: 'x', size: 1 },
      files: [
        { path: 'a', executable: false, size: 1, sha256: '1' },
        { path: 'b', executable: false, size: 1, sha256: '2' },
        { path: 'c', executable: false, size: 1, sha256: '3' },
      ],
    };
    const next = {
      ...base,
      image: 'ubuntu:26.04',
      buildScript: { sha256: 'y', size: 2 },
      files: [
        { path: 'a', executable: false, size: 2, sha256: '9' },
        { path: 'c', executable: true, size: 1, sha256: '3' },
        { path: 'd', executable: false, size: 1, sha256: '4' },
      ],
    };
    expect(explainChanges(base, next)).toEqual([
      { kind: 'image', before: 'ubuntu:24.04', after: 'ubuntu:26.04' },
      { kind: 'build.sh', before: 'x', after: 'y' },
      { kind: 'modified', path: 'a', detail: '1 → 2 bytes' },
      { kind: 'mode', path: 'c', detail: 'became executable' },
      { kind: 'added', path: 'd' },
      { kind: 'removed', path: 'b' },
    ]);
    expect(buildHash(base)).not.toBe(buildHash(next));
  });

  it('`project hash --explain` says "no previous build", then what changed', async () => {
    const root = await cycleswapProject({ 'req.txt': 'a\n' });
    await fs.writeFile(path.join(root, '.cycleswap/manifest.toml'), manifest(['req.txt']));
    const first = fakeContext({ cwd: path.join(root) });
    expect(await hashCommand({ json: false, explain: true }, first.ctx)).toBe(0);
    expect(first.stdout.text).toContain('no previous build');

    const project = (await loadProject(root)) as CycleswapProject;
    const { inputs, hash } = await collectBuildInputs(project);
    const { localBuildStore } = await import('../../src/runner/build-store.js');
    await localBuildStore(root).save({ hash, inputs, image: { id: 'sha256:1', tag: 'cycle-demo:1' }, base: 'ubuntu:24.04', builtAt: '2026-11-23T12:00:00Z' });

    const same = fakeContext({ cwd: root });
    await hashCommand({ json: false, explain: true }, same.ctx);
    expect(same.stdout.text).toContain('unchanged since the last build');

    await writeFiles(root, { 'req.txt': 'b\nc\n', '.cycleswap/build.sh': 'echo changed\n' });
    const changed = fakeContext({ cwd: path.join(root, '.cycleswap') }); // from a subfolder
    await hashCommand({ json: true, explain: true }, changed.ctx);
    const doc = JSON.parse(changed.stdout.text);
    expect(doc.changed).toBe(true);
    expect(doc.changes).toEqual([
      { kind: 'build.sh', before: inputs.buildScript.sha256, after: sha256Hex('echo changed\n') },
      { kind: 'modified', path: 'req.txt', detail: '2 → 4 bytes' },
    ]);
  });

  it('an unchanged tree takes its hash from the stat cache, and any change to it is still seen', async () => {
    const old = new Date('2020-01-01T00:00:00Z');
    const files = [
      { path: 'a.txt', bytes: Buffer.from('alpha'), executable: false },
      { path: 'src/b.sh', bytes: Buffer.from('echo b'), executable: true },
    ];
    const root = await makeProject(files, { mtime: old });
    const truth = await hashOf(root, false);
    expect(await hashOf(root, true, fiveSecondsOn)).toBe(truth); // cold: computed, and kept beside the entries
    const kept = await StatCache.load(path.join(root, '.cycle/stat-cache.bin'));
    expect(kept.memo.endsWith(truth)).toBe(true);
    const project = (await loadProject(root)) as CycleswapProject;
    const warm = await collectBuildInputs(project, { now: fiveSecondsOn });
    expect(warm).toMatchObject({ hash: truth, cache: { hits: 3, misses: 0 } });
    expect(warm.inputs.files.map((f) => [f.path, f.executable, f.sha256])).toEqual([
      ['a.txt', false, sha256Hex('alpha')],
      ['src/b.sh', true, sha256Hex('echo b')],
    ]);
    // The image is not a file: a new one is a new hash, with every file still a hit.
    await fs.writeFile(path.join(root, '.cycleswap/manifest.toml'), manifest(files.map((f) => f.path)).replace('24.04', '22.04'));
    const otherImage = await hashOf(root, true, fiveSecondsOn);
    expect(otherImage).not.toBe(truth);
    expect(otherImage).toBe(await hashOf(root, false));
    expect(await hashOf(root, true, fiveSecondsOn)).toBe(otherImage);
  });

  it('keeps no hash beside entries that leave out a file of its run (one changed in the last two seconds)', async () => {
    const old = new Date('2020-01-01T00:00:00Z');
    const root = await makeProject(
      [
        { path: 'a.txt', bytes: Buffer.from('alpha'), executable: false },
        { path: 'b.txt', bytes: Buffer.from('beta'), executable: false },
      ],
      { mtime: old },
    );
    // A clock at which a and build.sh were changed just over two seconds ago, and b (changed after them) less.
    const changed = async (file: string): Promise<number> => (await fs.stat(path.join(root, file))).ctimeMs;
    const others = Math.max(await changed('a.txt'), await changed('.cycleswap/build.sh'));
    for (let i = 0; i < 1000 && (await changed('b.txt')) <= others; i++) await fs.utimes(path.join(root, 'b.txt'), old, old);
    const bChanged = await changed('b.txt');
    expect(bChanged).toBeGreaterThan(others);
    const justAfterB = (): number => (others + bChanged) / 2 + 2000;
    const withB = await hashOf(root, true, justAfterB);
    expect((await StatCache.load(path.join(root, '.cycle/stat-cache.bin'))).memo).toBe('');
    // Without b, the files are exactly the remembered entries: a kept hash would be the one with b.
    await fs.rm(path.join(root, 'b.txt'));
    await fs.writeFile(path.join(root, '.cycleswap/manifest.toml'), manifest(['a.txt']));
    const withoutB = await hashOf(root, true, fiveSecondsOn);
    expect(withoutB).not.toBe(withB);
    expect(withoutB).toBe(await hashOf(root, false));
  });

  it('a warm run reads no file bytes', async () => {
    const root = await makeProject([{ path: 'a.bin', bytes: Buffer.alloc(1000, 1), executable: false }], { mtime: new Date('2020-01-01') });
    await fs.utimes(path.join(root, '.cycleswap/build.sh'), new Date('2020-01-01'), new Date('2020-01-01'));
    const project = (await loadProject(root)) as CycleswapProject;
    // Files changed in the last two seconds are not remembered: look from a little later.
    const later = () => Date.now() + 5000;
    const cold = await collectBuildInputs(project, { now: later });
    expect(cold.cache).toEqual({ hits: 0, misses: 2 });
    const warm = await collectBuildInputs(project, { now: later });
    expect(warm.cache).toEqual({ hits: 2, misses: 0 });
    expect(warm.hash).toBe(cold.hash);
  });
});
