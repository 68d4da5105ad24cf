import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdOf } from '../../src/api/schemas.js';
import type { RunningServer } from '../../src/server/index.js';
import { upload as volumeUpload, list as volumeList, rm as volumeRm } from '../../src/commands/volume.js';
import { run as projectUpload } from '../../src/commands/project/upload.js';
import { pull } from '../../src/commands/artifacts.js';
import { tail } from '../../src/commands/job/read.js';
import { ApiClient } from '../../src/api/client.js';
import type { Mount } from '../../src/docker/driver.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { startFakeDockerServer } from '../helpers/server.js';
import { cycleswapProject, fakeContext, tempDir, writeFiles } from '../helpers/context.js';
import { waitFor } from '../helpers/wait.js';

let server: RunningServer;
const docker = new FakeDocker();
const serverLog: string[] = [];
beforeAll(async () => {
  server = await startFakeDockerServer(docker, {
    dataDir: await tempDir('cycle-volume-server-'),
    log: (line) => serverLog.push(line),
  });
});
afterAll(async () => server.close());

const env = () => ({ CYCLE_API_URL: server.url, CYCLE_TOKEN: server.token });
const blobsStored = (): number => serverLog.filter((line) => line.startsWith('volume blob ')).length;
const api = () => new ApiClient({ baseUrl: server.url, token: server.token, version: 'test', attempts: 1 });

async function uploadVolume(dir: string, name: string): Promise<{ files: number; sent_files: number; sent_bytes: number; unchanged: boolean }> {
  // cwd is HOME in a fake context: elsewhere, so cycle's data folder (the stat cache) is not in the volume.
  const { ctx, stdout } = fakeContext({ cwd: await tempDir(), env: env() });
  expect(await volumeUpload({ dir, name, json: true }, ctx)).toBe(0);
  return JSON.parse(stdout.text);
}

describe('cycle volume upload|list|rm against the local server', () => {
  it('a second upload of the same folder sends no file bytes; after one file changes, only that file', async () => {
    const dir = await tempDir();
    await writeFiles(dir, { 'a.txt': 'alpha\n', 'sub/b.txt': 'bravo\n', 'sub/deep/c.bin': 'x'.repeat(5000), 'same-as-a.txt': 'alpha\n' });
    const before = blobsStored();
    const first = await uploadVolume(dir, 'sync-data');
    // Four files, three contents: the copy of a.txt is sent once.
    expect(first).toMatchObject({ files: 4, sent_files: 3, sent_bytes: 6 + 6 + 5000, unchanged: false });
    expect(blobsStored() - before).toBe(3);

    const second = await uploadVolume(dir, 'sync-data');
    expect(second).toMatchObject({ files: 4, sent_files: 0, sent_bytes: 0, unchanged: true });
    expect(blobsStored() - before).toBe(3);

    await writeFiles(dir, { 'sub/b.txt': 'bravo, changed\n' });
    const third = await uploadVolume(dir, 'sync-data');
    expect(third).toMatchObject({ files: 4, sent_files: 1, sent_bytes: 15, unchanged: false });
    expect(blobsStored() - before).toBe(4);
    expect(await api().listVolumes()).toContainEqual(expect.objectContaining({ name: 'sync-data', files: 4, bytes: 6 + 15 + 5000 + 6 }));
  });

  it('list shows the volumes; rm removes one, and a second rm says there is none', async () => {
    const dir = await tempDir();
    await writeFiles(dir, { 'x.txt': 'x\n' });
    await uploadVolume(dir, 'to-remove');
    const listed = fakeContext({ cwd: dir, env: env() });
    await volumeList({ json: false }, listed.ctx);
    expect(listed.stdout.text).toMatch(/^to-remove\t1\t2\t/m);
    await volumeRm({ name: 'to-remove', json: false }, fakeContext({ cwd: dir, env: env() }).ctx);
    expect((await api().listVolumes()).map((v) => v.name)).not.toContain('to-remove');
    await expect(volumeRm({ name: 'to-remove', json: false }, fakeContext({ cwd: dir, env: env() }).ctx)).rejects.toMatchObject({
      message: 'no volume "to-remove" on the backend',
      hint: expect.stringContaining('cycle volume list'),
    });
  });

  it('a folder whose name is not a volume name needs --name; a missing folder is named', async () => {
    const parent = await tempDir();
    const dir = path.join(parent, 'My Data');
    await fs.mkdir(dir);
    const { ctx } = fakeContext({ cwd: parent, env: env() });
    await expect(volumeUpload({ dir: 'My Data', json: false }, ctx)).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringContaining('"My Data" is not a volume name'),
      hint: expect.stringContaining('--name'),
    });
    await expect(volumeUpload({ dir: 'nope', json: false }, ctx)).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringContaining('nope: no such folder'),
    });
  });

  it('the server refuses a commit before its blobs, a blob whose bytes do not match, and a path leading out', async () => {
    const sha = 'a'.repeat(64);
    await expect(api().commitVolume('refused', [{ path: 'f', sha256: sha, size: 1, executable: false }])).rejects.toMatchObject({
      status: 422,
      code: 'missing_blobs',
    });
    const bytes = Buffer.from('hello');
    const { Readable } = await import('node:stream');
    await expect(
      api().putVolumeBlob(sha, { open: () => Readable.from([bytes]), length: bytes.length, contentType: 'application/octet-stream' }),
    ).rejects.toMatchObject({ status: 422, code: 'checksum_mismatch' });
    await expect(api().commitVolume('refused', [{ path: '../escape', sha256: sha, size: 1, executable: false }])).rejects.toMatchObject({
      status: 400,
      code: 'invalid_path',
    });
    expect((await api().listVolumes()).map((v) => v.name)).not.toContain('refused');
  });

  it('GET /api/v1/volumes/:name pages the files by path (limit, cursor, next_cursor), every file once; a bad cursor is a 400 naming it', async () => {
    // 250 files sharing one blob (the list is what is paged, not the bytes).
    const dir = await tempDir();
    await writeFiles(dir, Object.fromEntries(Array.from({ length: 250 }, (_, i) => [`f${String(i).padStart(3, '0')}.txt`, 'same\n'])));
    expect((await uploadVolume(dir, 'many-files')).files).toBe(250);
    const read = async (query: string) => {
      const response = await fetch(`${server.url}/api/v1/volumes/many-files${query}`, { headers: { Authorization: `Bearer ${server.token}` } });
      return { status: response.status, body: (await response.json()) as any };
    };
    // No limit: the paged routes' default (100), not the whole list.
    const first = await read('');
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ name: 'many-files', total: 250, next_cursor: '100' });
    expect(first.body.files).toHaveLength(100);
    expect(first.body.files[0]).toEqual({ path: 'f000.txt', sha256: expect.stringMatching(/^[0-9a-f]{64}$/), size: 5, executable: false });
    const paths: string[] = [];
    let cursor: string | null = '0';
    let pages = 0;
    while (cursor !== null && pages++ < 10) {
      const page = await read(`?limit=120&cursor=${cursor}`);
      expect(page.status).toBe(200);
      paths.push(...page.body.files.map((f: { path: string }) => f.path));
      cursor = page.body.next_cursor;
    }
    expect(pages).toBe(3);
    expect(paths).toEqual(Array.from({ length: 250 }, (_, i) => `f${String(i).padStart(3, '0')}.txt`));
    const bad = await read('?cursor=abc');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ field: 'cursor' });
    expect((await read('?limit=5000')).body.error).toMatchObject({ field: 'limit' });
  });
});

describe('project upload links the manifest volumes; jobs mount them read-only', () => {
  it('a manifest naming a volume the server lacks is refused at upload, naming it and the fix; once uploaded, jobs mount it read-only', async () => {
    const root = await cycleswapProject({
      '.cycleswap/manifest.toml':
        '[main]\nname = "vol-user"\nvolumes = ["train-set", "builtin/base-model"]\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n',
    });
    const refused = fakeContext({ cwd: root, env: env() });
    const error = await projectUpload({ json: true, rebuild: false, clean: false, force: false }, refused.ctx).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 422, code: 'unknown_volume' });
    expect((error as Error).message).toContain('"train-set"');
    expect((error as Error).message).toContain('cycle volume upload DIR --name train-set');

    const data = await tempDir();
    await writeFiles(data, { 'rows.csv': 'a,b\n' });
    await uploadVolume(data, 'train-set');
    expect(await projectUpload({ json: true, rebuild: false, clean: false, force: false }, fakeContext({ cwd: root, env: env() }).ctx)).toBe(0);

    const seen: Mount[][] = [];
    docker.onRun = (spec) => {
      seen.push(spec.mounts);
      return 0;
    };
    try {
      const job = await api().submitJob({ project: 'vol-user' });
      await waitFor(async () => (await api().getJob(jobIdOf(job))).status === 'completed', 20_000, 'the job to complete');
    } finally {
      docker.onRun = () => 0;
    }
    const volumes = seen.at(-1)!.filter((m) => m.target.startsWith('/volumes/'));
    expect(volumes.map((m) => [m.target, m.type === 'bind' && m.readonly])).toEqual([
      ['/volumes/train-set', true],
      ['/volumes/builtin/base-model', true],
    ]);
    expect(await fs.readFile(path.join(volumes[0]!.source, 'rows.csv'), 'utf8')).toBe('a,b\n');

    // Removed after the push: the next task fails, naming the volume and the fix.
    await api().removeVolume('train-set');
    const orphan = await api().submitJob({ project: 'vol-user' });
    await waitFor(async () => (await api().getJob(jobIdOf(orphan))).status === 'failed', 20_000, 'the job to fail');
    const [failed] = await api().tasks(jobIdOf(orphan));
    expect(failed!.error).toContain('volume "train-set"');
    expect(failed!.error).toContain('cycle volume upload DIR --name train-set');
  });
});

describe('job pull and job tail', () => {
  it('pull fetches the artifacts so far; a second pull gets only the new ones and skips the rest', async () => {
    const root = await cycleswapProject({
      '.cycleswap/manifest.toml': '[main]\nname = "pull-demo"\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n',
    });
    expect(await projectUpload({ json: true, rebuild: false, clean: false, force: false }, fakeContext({ cwd: root, env: env() }).ctx)).toBe(0);
    // Task 0 writes first.txt and ends; task 1 waits until the test lets it go, then writes second.txt.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let runs = 0;
    docker.onRun = async (spec, io) => {
      // The job's /artifacts, captured while it runs (the runner task service mounts it).
      const outputs = spec.mounts.find((m) => m.type === 'bind' && m.target === '/artifacts')!;
      const first = runs++ === 0;
      io.stdout(Buffer.from(first ? 'task zero says hi\n' : 'task one says hi\n'));
      if (first) await fs.writeFile(path.join(outputs.source, 'first.txt'), 'one\n');
      else {
        await released;
        await fs.writeFile(path.join(outputs.source, 'second.txt'), 'two\n');
      }
      return 0;
    };
    try {
      const job = await api().submitJob({ project: 'pull-demo', fan_out: { items: [{ i: 0 }, { i: 1 }] } });
      await waitFor(async () => (await api().artifacts({ job: jobIdOf(job) })).length === 1, 20_000, 'the first artifact');
      const out = await tempDir();
      const during = fakeContext({ cwd: out, env: env() });
      await pull({ id: jobIdOf(job), json: true, overwrite: false }, during.ctx);
      const firstPull = JSON.parse(during.stdout.text);
      expect(firstPull.status).toBe('running');
      expect(firstPull.artifacts.map((a: { path: string; skipped: boolean }) => [path.relative(out, a.path), a.skipped])).toEqual([
        [path.join(jobIdOf(job), 'first.txt'), false],
      ]);

      release();
      await waitFor(async () => (await api().getJob(jobIdOf(job))).status === 'completed', 20_000, 'the job to complete');
      const after = fakeContext({ cwd: out, env: env() });
      await pull({ id: jobIdOf(job), json: true, overwrite: false }, after.ctx);
      const secondPull = JSON.parse(after.stdout.text);
      expect(secondPull.artifacts.map((a: { path: string; skipped: boolean }) => [path.basename(a.path), a.skipped])).toEqual([
        ['first.txt', true],
        ['second.txt', false],
      ]);
      expect(await fs.readFile(path.join(out, jobIdOf(job), 'second.txt'), 'utf8')).toBe('two\n');

      // A local file that differs from the artifact is not trusted, and not replaced unless asked (issue 18).
      await fs.writeFile(path.join(out, jobIdOf(job), 'first.txt'), 'edited\n');
      const refused = fakeContext({ cwd: out, env: env() });
      await expect(pull({ id: jobIdOf(job), json: true, overwrite: false }, refused.ctx)).rejects.toThrow(/1 artifact not written/);
      expect(await fs.readFile(path.join(out, jobIdOf(job), 'first.txt'), 'utf8')).toBe('edited\n');
      const third = fakeContext({ cwd: out, env: env() });
      await pull({ id: jobIdOf(job), json: true, overwrite: true }, third.ctx);
      expect(JSON.parse(third.stdout.text).artifacts.map((a: { path: string; skipped: boolean }) => [path.basename(a.path), a.skipped])).toEqual([
        ['first.txt', false],
        ['second.txt', true],
      ]);
      expect(await fs.readFile(path.join(out, jobIdOf(job), 'first.txt'), 'utf8')).toBe('one\n');

      const tailed = fakeContext({ cwd: out, env: env() });
      expect(await tail({ id: jobIdOf(job), json: false }, tailed.ctx)).toBe(0);
      expect(tailed.stdout.text).toContain('[0] task zero says hi');
      expect(tailed.stdout.text).toContain('[1] task one says hi');
    } finally {
      release();
      docker.onRun = () => 0;
    }
  });
});
