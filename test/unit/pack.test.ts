import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { packProject } from '../../src/pack/pack.js';
import { selectFiles, streamSelection } from '../../src/pack/select.js';
import { run as packCommand } from '../../src/commands/project/pack.js';
import { cycleswapProject, fakeContext, tempDir, writeFiles } from '../helpers/context.js';

async function makeTree(root: string, files: Record<string, string>, options: { umask?: number; mtime?: Date; reverse?: boolean } = {}): Promise<void> {
  const names = Object.keys(files).sort();
  if (options.reverse) names.reverse();
  const previous = process.umask(options.umask ?? 0o022);
  try {
    for (const name of names) {
      await fs.mkdir(path.dirname(path.join(root, name)), { recursive: true });
      await fs.writeFile(path.join(root, name), files[name]!);
      if (name.endsWith('.sh')) await fs.chmod(path.join(root, name), 0o777 & ~(options.umask ?? 0o022));
      if (options.mtime) await fs.utimes(path.join(root, name), options.mtime, options.mtime);
    }
  } finally {
    process.umask(previous);
  }
}

describe('deterministic packs', () => {
  const files = {
    '.cycleswap/manifest.toml': '[main]\nname = "d"\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n',
    '.cycleswap/run.sh': 'echo run\n',
    '.cycleswap/build.sh': 'echo build\n',
    'src/main.py': 'print("hi")\n',
    'src/deep/er/x.txt': 'x'.repeat(5000),
    'a-b.txt': 'sorted before a/ by bytes\n',
    [`long/${'n'.repeat(120)}/file-with-a-long-path.txt`]: 'pax or prefix\n',
    'ünïcödé.txt': 'non-ascii name\n',
  };

  it('two packs of the same tree in other folders, mtimes and umask are byte-identical', async () => {
    const a = await tempDir();
    const b = await tempDir();
    await makeTree(a, files, { umask: 0o022, mtime: new Date('2020-01-01') });
    await makeTree(b, files, { umask: 0o077, mtime: new Date('2025-06-30'), reverse: true });
    const packA = await packProject(a, { out: path.join(await tempDir(), 'a.tar.gz') });
    const packB = await packProject(b, { out: path.join(await tempDir(), 'b.tar.gz') });
    expect(packA.contentHash).toBe(packB.contentHash);
    expect(Buffer.compare(await fs.readFile(packA.file), await fs.readFile(packB.file))).toBe(0);
    // gzip header: no name, mtime 0, OS unix
    expect([...(await fs.readFile(packA.file)).subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
  });

  it('is a valid tar.gz that GNU tar extracts, with normalised modes and owners', async () => {
    const root = await tempDir();
    await makeTree(root, files, { umask: 0o077 });
    const pack = await packProject(root, { out: path.join(await tempDir(), 'p.tar.gz') });
    const listing = execFileSync('tar', ['-tvzf', pack.file], { encoding: 'utf8' });
    expect(listing).toMatch(/^-rwxr-xr-x root\/root .* \.cycleswap\/run\.sh$/m);
    expect(listing).toMatch(/^-rw-r--r-- root\/root .* src\/main\.py$/m);
    expect(listing).toMatch(/1970-01-01 00:00/);
    const out = await tempDir();
    execFileSync('tar', ['-xzf', pack.file, '-C', out]);
    for (const [name, content] of Object.entries(files)) expect(await fs.readFile(path.join(out, name), 'utf8')).toBe(content);
  });

  it('`project pack` reports size, count, the largest files, and names left-out secrets', async () => {
    const root = await cycleswapProject({ 'big.bin': 'x'.repeat(10_000), '.env': 'SECRET=1', 'keys/server.pem': 'k', '.env.example': 'SECRET=' });
    const { ctx, stdout, stderr } = fakeContext({ cwd: root });
    expect(await packCommand({ out: path.join(await tempDir(), 'p.tar.gz'), list: false, json: true }, ctx)).toBe(0);
    const doc = JSON.parse(stdout.text);
    expect(doc).toMatchObject({ files: 5, excluded_secrets: ['.env', 'keys/server.pem'] });
    expect(doc.largest[0]).toEqual({ path: 'big.bin', size: 10_000 });
    expect(stderr.text).toContain('left out .env: it looks like a secret; to ship it on purpose, add the line "!.env" to .cycleignore');
    await writeFiles(root, { '.cycleignore': '!.env\nbig.bin\n' });
    const listed = fakeContext({ cwd: root });
    await packCommand({ list: true, json: false }, listed.ctx);
    expect(listed.stdout.text.split('\n')).toContain('.env');
    expect(listed.stdout.text.split('\n')).not.toContain('big.bin');
  });

  it('a symlink inside is kept as a link; one pointing outside is an error naming it', async () => {
    const root = await cycleswapProject({ 'data/real.txt': 'r' });
    await fs.symlink('real.txt', path.join(root, 'data/alias.txt'));
    const selection = await selectFiles(root);
    expect(selection.entries.find((e) => e.path === 'data/alias.txt')).toMatchObject({ type: 'symlink', linkTarget: 'real.txt' });
    await fs.symlink('/etc/passwd', path.join(root, 'escape'));
    await expect(selectFiles(root)).rejects.toMatchObject({ message: 'escape is a symlink to /etc/passwd, outside the project', exitCode: 3 });
  });
});

describe('file selection agrees with git check-ignore', () => {
  const patterns = [
    '*.log',
    '!keep.log',
    'build/',
    '/top.txt',
    'tmp',
    'docs/*.md',
    '**/cache',
    'a/**/z.txt',
    '*.py[co]',
    'out*',
    '!out-keep.txt',
    'sub/',
    '\\#*',
    '*.tmp',
    'nested/deep/',
  ];
  const names = ['a.log', 'keep.log', 'top.txt', 'x.py', 'x.pyc', 'z.txt', 'out.txt', 'out-keep.txt', 'readme.md', 'n.tmp', '#hash', 'plain'];
  const dirs = ['', 'build', 'docs', 'src', 'src/cache', 'a/b/c', 'nested/deep', 'tmp', 'sub', 'src/sub'];

  it('on generated trees, with nested .gitignore files', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.subarray(patterns, { minLength: 1 }),
        fc.subarray(patterns),
        fc.constantFrom('src', 'a/b', 'docs'),
        fc.uniqueArray(fc.tuple(fc.constantFrom(...dirs), fc.constantFrom(...names)), { minLength: 5, maxLength: 40 }),
        async (rootRules, nestedRules, nestedDir, placements) => {
          const root = await tempDir('cycle-gitignore-');
          const files: Record<string, string> = { '.gitignore': rootRules.join('\n') + '\n', [`${nestedDir}/.gitignore`]: nestedRules.join('\n') + '\n' };
          for (const [dir, name] of placements) files[dir ? `${dir}/${name}` : name] = 'x';
          await writeFiles(root, files);
          execFileSync('git', ['init', '-q'], { cwd: root });
          const gitFiles = execFileSync('git', ['-c', 'core.excludesFile=/dev/null', 'ls-files', '--others', '--exclude-standard', '-z'], {
            cwd: root,
            encoding: 'utf8',
          })
            .split('\0')
            .filter(Boolean)
            .sort();
          const ours = (await selectFiles(root)).entries
            .filter((e) => e.type === 'file')
            .map((e) => e.path)
            .sort();
          expect(ours).toEqual(gitFiles);
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe('the streamed selection (packing while the tree is walked)', () => {
  // Names around "/" in byte order ("-" and "." sort before it, "0" after), upper case, non-ASCII
  // (a high code unit: the byte comparison), and secret-looking ones (left out, and listed).
  const names = ['a', 'a-b', 'a.txt', 'a0', 'ab', 'B', 'é', 'z', '.env', 'x.pem'];

  it('gives the entries in the order selectFiles sorts them, and the same selection', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.array(fc.constantFrom(...names), { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 25 }), async (paths) => {
        const root = await tempDir('cycle-stream-');
        const files: Record<string, string> = {};
        // A path that is a folder of another one stays a folder: files only at the leaves.
        const folders = new Set(paths.flatMap((parts) => parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'))));
        for (const parts of paths) if (!folders.has(parts.join('/'))) files[parts.join('/')] = parts.join('/');
        await writeFiles(root, files);
        const sorted = await selectFiles(root);
        const streamed = await streamSelection(root);
        const order: string[] = [];
        for await (const entry of streamed.entries) order.push(entry.path);
        expect(order).toEqual(sorted.entries.map((e) => e.path));
        expect(streamed.done()).toEqual(sorted);
      }),
      { numRuns: 60 },
    );
  });

  it('packs the same bytes as a pack of the selection made first', async () => {
    const root = await tempDir();
    await writeFiles(root, { 'a/x.txt': 'x', 'a-b.txt': 'y'.repeat(3000), 'a.txt': 'z', a0: '0', 'é/ü.txt': 'u', '.env': 'SECRET=1' });
    const out = await tempDir();
    const streamed = await packProject(root, { out: path.join(out, 'streamed.tgz') });
    const given = await packProject(root, { out: path.join(out, 'given.tgz'), selection: await selectFiles(root) });
    expect(streamed.contentHash).toBe(given.contentHash);
    expect(streamed.selection.excludedSecrets).toEqual(['.env']);
    const listed = execFileSync('tar', ['-tzf', path.join(out, 'streamed.tgz')], { encoding: 'utf8' })
      .trim()
      .split('\n');
    expect(listed).toEqual(
      ['a/', 'a/x.txt', 'a-b.txt', 'a.txt', 'a0', 'é/', 'é/ü.txt'].sort((x, y) =>
        Buffer.compare(Buffer.from(x.replace(/\/$/, '')), Buffer.from(y.replace(/\/$/, ''))),
      ),
    );
  });
});
