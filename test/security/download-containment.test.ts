import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { runMain, tempDir } from '../helpers/context.js';
import { serveForTest } from '../helpers/local-http.js';

// Issue 18, High 4: what a job's artifact names (or a hostile server) can make `artifacts download`
// and `job pull` write on the user's machine: a repository's config, a replaced dotfile, a file
// through a symbolic link on the way.
let root: string;
beforeEach(async () => {
  root = await tempDir('cycle-sec-contain-');
});

interface FakeArtifact {
  id: string;
  name: string;
  body: string;
  /** Left out of the list, sent as X-Artifact-Name only. */
  headerOnly?: boolean;
}

/** A server whose job job_1 has these artifacts (listed with size and sha256, or named in the download's header only). */
async function serveJob(artifacts: FakeArtifact[]): Promise<string> {
  return serveForTest((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/api/v1/jobs/job_1') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'job_1', status: 'completed' }));
      return;
    }
    if (url.pathname === '/api/v1/artifacts') {
      res.writeHead(200, { 'content-type': 'application/json' });
      const listed = artifacts.map((a) => ({
        id: a.id,
        job_id: 'job_1',
        ...(a.headerOnly ? {} : { name: a.name }),
        size: Buffer.byteLength(a.body),
        sha256: createHash('sha256').update(a.body).digest('hex'),
      }));
      res.end(JSON.stringify({ artifacts: listed }));
      return;
    }
    const artifact = artifacts.find((a) => url.pathname === `/api/v1/artifacts/${a.id}`);
    if (!artifact) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'x-artifact-size': String(Buffer.byteLength(artifact.body)),
      'x-artifact-name': encodeURIComponent(artifact.name),
    });
    res.end(artifact.body);
  });
}

async function cycle(apiUrl: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return runMain(args, {
    env: {
      HOME: path.join(root, 'home'),
      XDG_CONFIG_HOME: path.join(root, '.cfg'),
      CYCLE_API_URL: apiUrl,
      CYCLE_TOKEN: 'secret-token',
      CYCLE_HTTP_RETRIES: '1',
    },
    cwd: path.join(root, 'work'),
  });
}

const HOOK = '[core]\n\tfsmonitor = "touch /tmp/pwned"\n';

/** A user's repository in root/work: .git/config and a .bashrc. */
async function userRepository(): Promise<string> {
  const work = path.join(root, 'work');
  await fs.mkdir(path.join(work, '.git'), { recursive: true });
  await fs.writeFile(path.join(work, '.git', 'config'), '[core]\n\tbare = false\n');
  await fs.writeFile(path.join(work, '.bashrc'), 'mine\n');
  return work;
}

describe('artifacts download: names that would run code or replace files', () => {
  it('by default writes a job into ./<job id>/, not among the files of the working folder', async () => {
    const work = await userRepository();
    const url = await serveJob([{ id: 'art_1', name: '.bashrc', body: 'echo pwned\n' }]);
    const result = await cycle(url, ['artifacts', 'download', '--job', 'job_1']);
    expect(result.code, result.stderr).toBe(0);
    expect(await fs.readFile(path.join(work, '.bashrc'), 'utf8')).toBe('mine\n');
    expect(await fs.readFile(path.join(work, 'job_1', '.bashrc'), 'utf8')).toBe('echo pwned\n');
  });

  it('ids without --out go to ./artifacts/', async () => {
    const work = await userRepository();
    const url = await serveJob([{ id: 'art_1', name: 'model.bin', body: 'weights' }]);
    const result = await cycle(url, ['artifacts', 'download', 'art_1']);
    expect(result.code, result.stderr).toBe(0);
    expect(await fs.readFile(path.join(work, 'artifacts', 'model.bin'), 'utf8')).toBe('weights');
  });

  it.each([['.git/config'], ['.GIT/config'], ['.git./config'], ['.g\u200cit/config'], ['sub/dir/.git/hooks/pre-commit'], ['.hg/hgrc']])(
    'refuses %j at any depth, even into the folder the user named, and writes the other artifacts',
    async (name) => {
      const work = await userRepository();
      const url = await serveJob([
        { id: 'art_1', name, body: HOOK },
        { id: 'art_2', name: 'ok.txt', body: 'fine' },
      ]);
      const result = await cycle(url, ['artifacts', 'download', '--job', 'job_1', '--out', '.']);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`art_1: ${JSON.stringify(name)}`);
      expect(result.stderr).toContain('component');
      expect(await fs.readFile(path.join(work, '.git', 'config'), 'utf8')).toBe('[core]\n\tbare = false\n');
      expect(await fs.readFile(path.join(work, 'ok.txt'), 'utf8')).toBe('fine');
      const all = await fs.readdir(work, { recursive: true });
      expect(all.filter((f) => f.includes('pre-commit') || f.includes('hgrc'))).toEqual([]);
    },
  );

  it('refuses a .git name that comes only in the download header (ids given)', async () => {
    const work = await userRepository();
    const url = await serveJob([{ id: 'art_1', name: '.git/config', body: HOOK, headerOnly: true }]);
    const result = await cycle(url, ['artifacts', 'download', 'art_1', '--out', '.']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('".git/config"');
    expect(await fs.readFile(path.join(work, '.git', 'config'), 'utf8')).toBe('[core]\n\tbare = false\n');
  });

  it('does not replace a file the user has unless --overwrite; the same bytes are no conflict', async () => {
    const work = await userRepository();
    const url = await serveJob([{ id: 'art_1', name: '.bashrc', body: 'echo pwned\n' }]);
    const refused = await cycle(url, ['artifacts', 'download', '--job', 'job_1', '--out', '.']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('".bashrc": a file of that name exists here');
    expect(refused.stderr).toContain('--overwrite');
    expect(await fs.readFile(path.join(work, '.bashrc'), 'utf8')).toBe('mine\n');

    const asked = await cycle(url, ['artifacts', 'download', '--job', 'job_1', '--out', '.', '--overwrite']);
    expect(asked.code, asked.stderr).toBe(0);
    expect(await fs.readFile(path.join(work, '.bashrc'), 'utf8')).toBe('echo pwned\n');

    const again = await cycle(url, ['artifacts', 'download', '--job', 'job_1', '--out', '.']);
    expect(again.code, again.stderr).toBe(0);
  });

  it('never writes through a symbolic link to a folder inside --out', async () => {
    await fs.mkdir(path.join(root, 'work', 'out'), { recursive: true });
    await fs.mkdir(path.join(root, 'elsewhere'));
    await fs.symlink(path.join(root, 'elsewhere'), path.join(root, 'work', 'out', 'data'));
    const url = await serveJob([{ id: 'art_1', name: 'data/x.sh', body: 'evil' }]);
    const result = await cycle(url, ['artifacts', 'download', '--job', 'job_1', '--out', 'out']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('"data" is a symbolic link');
    expect(await fs.readdir(path.join(root, 'elsewhere'))).toEqual([]);
  });

  it('a symbolic link at the part file name is not written through', async () => {
    await fs.mkdir(path.join(root, 'work', 'out'), { recursive: true });
    await fs.writeFile(path.join(root, 'victim'), 'precious');
    await fs.symlink(path.join(root, 'victim'), path.join(root, 'work', 'out', '.art_1.cycle-part'));
    const url = await serveJob([{ id: 'art_1', name: 'x.txt', body: 'evil' }]);
    const result = await cycle(url, ['artifacts', 'download', 'art_1', '--out', 'out']);
    expect(result.code, result.stderr).toBe(0);
    expect(await fs.readFile(path.join(root, 'victim'), 'utf8')).toBe('precious');
    expect(await fs.readFile(path.join(root, 'work', 'out', 'x.txt'), 'utf8')).toBe('evil');
  });

  it('a file where a folder of the name should be is not replaced', async () => {
    const work = path.join(root, 'work');
    await fs.mkdir(work, { recursive: true });
    await fs.writeFile(path.join(work, 'notes'), 'mine');
    const url = await serveJob([{ id: 'art_1', name: 'notes/a.txt', body: 'x' }]);
    const result = await cycle(url, ['artifacts', 'download', '--job', 'job_1', '--out', '.', '--overwrite']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('"notes" exists here and is not a folder');
    expect(await fs.readFile(path.join(work, 'notes'), 'utf8')).toBe('mine');
  });
});

describe('job pull: the same rules', () => {
  it("refuses .git/ names and links on the way, and keeps the user's files", async () => {
    const work = await userRepository();
    await fs.mkdir(path.join(work, 'job_1'));
    await fs.mkdir(path.join(root, 'elsewhere'));
    await fs.symlink(path.join(root, 'elsewhere'), path.join(work, 'job_1', 'logs'));
    const url = await serveJob([
      { id: 'art_1', name: '.git/config', body: HOOK },
      { id: 'art_2', name: 'logs/run.log', body: 'evil' },
      { id: 'art_3', name: 'result.json', body: '{}' },
    ]);
    const result = await cycle(url, ['job', 'pull', 'job_1']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('art_1: ".git/config"');
    expect(result.stderr).toContain('art_2: "logs/run.log": "logs" is a symbolic link');
    expect(await fs.readdir(path.join(root, 'elsewhere'))).toEqual([]);
    expect(await fs.readFile(path.join(work, 'job_1', 'result.json'), 'utf8')).toBe('{}');
    expect((await fs.readdir(path.join(work, 'job_1'))).sort()).toEqual(['logs', 'result.json']);
  });
});
