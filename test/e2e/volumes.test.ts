import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cycle, removeTestProjectImages, testProjectName, waitFor } from '../helpers/e2e.js';
import { client, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { tempDir, writeFiles } from '../helpers/context.js';

let server: ServerProcess;
let env: Record<string, string>;
let projectDir: string;
const PROJECT = testProjectName('volumes');
const blobsStored = (): number => (server.log().match(/volume blob \w+ stored/g) ?? []).length;

beforeAll(async () => {
  server = await startServerProcess({ workers: 1 });
  env = { CYCLE_API_URL: server.url, CYCLE_TOKEN: server.token, XDG_CONFIG_HOME: await tempDir('cycle-cfg-'), XDG_DATA_HOME: await tempDir('cycle-data-') };
  projectDir = await tempDir('cycle-e2e-volumes-');
  await writeFiles(projectDir, {
    '.cycleswap/manifest.toml': `[main]\nname = "${PROJECT}"\nvolumes = ["corpus"]\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n`,
    // Task 0 reports the volume and writes first.txt at once; task 1 takes its time, then writes second.txt.
    '.cycleswap/run.sh': [
      'out="${CYCLE_ARTIFACTS_DIR:-/artifacts}"',
      'cat /volumes/corpus/words.txt',
      'if touch /volumes/corpus/new 2>/dev/null; then echo "volume: WRITABLE"; else echo "volume: read-only"; fi',
      'if grep -q \'"i":1\' "$COMPUTALOT_TASK_PAYLOAD"; then sleep 8; echo two > "$out/second.txt"; else echo one > "$out/first.txt"; fi',
      '',
    ].join('\n'),
    '.cycleswap/build.sh': 'true\n',
  });
});

afterAll(async () => {
  await server.stop();
  await removeTestProjectImages([PROJECT]);
});

describe('cycle volume and job pull against a real cycle server', () => {
  it('volume upload sends only what changed; a project naming a missing volume is refused; a job mounts the volume read-only; pull during and after the run', async () => {
    const refused = await cycle(['project', 'upload'], { cwd: projectDir, env });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('"corpus"');
    expect(refused.stderr).toContain('cycle volume upload DIR --name corpus');

    const data = await tempDir('cycle-e2e-corpus-');
    await writeFiles(data, { 'words.txt': 'hello volume\n', 'big.bin': 'z'.repeat(100_000), 'nested/n.txt': 'n\n' });
    const upload = async (): Promise<{ sent_files: number; sent_bytes: number; files: number }> => {
      const result = await cycle(['volume', 'upload', data, '--name', 'corpus', '--json'], { cwd: projectDir, env });
      expect(result.code, result.stderr).toBe(0);
      return JSON.parse(result.stdout);
    };
    expect(await upload()).toMatchObject({ files: 3, sent_files: 3 });
    expect(blobsStored()).toBe(3);
    expect(await upload()).toMatchObject({ files: 3, sent_files: 0, sent_bytes: 0 });
    expect(blobsStored()).toBe(3);
    await writeFiles(data, { 'words.txt': 'hello again, volume\n' });
    expect(await upload()).toMatchObject({ files: 3, sent_files: 1, sent_bytes: 20 });
    expect(blobsStored()).toBe(4);
    const listed = await cycle(['volume', 'list'], { cwd: projectDir, env });
    expect(listed.stdout).toMatch(/^corpus\t3\t100022\t/m);

    expect((await cycle(['project', 'upload'], { cwd: projectDir, env })).code).toBe(0);
    const queued = await cycle(['job', 'queue', '--fan-out-items', '-'], { cwd: projectDir, env, input: '[{"i": 0}, {"i": 1}]' });
    expect(queued.code, queued.stderr).toBe(0);
    const id = queued.stdout.trim();
    const api = client(server);
    await waitFor(async () => (await api.call('GET', `/api/v1/artifacts?job=${id}`)).body.artifacts.length === 1, 120_000, 'the first artifact');

    const out = await tempDir('cycle-e2e-pull-');
    const during = await cycle(['job', 'pull', id, '--json'], { cwd: out, env });
    expect(during.code, during.stderr).toBe(0);
    const first = JSON.parse(during.stdout);
    expect(first.status).toBe('running');
    expect(first.artifacts.map((a: { path: string; skipped: boolean }) => [path.basename(a.path), a.skipped])).toEqual([['first.txt', false]]);

    const tailed = await cycle(['job', 'tail', id], { cwd: out, env });
    expect(tailed.code).toBe(0);
    expect(tailed.stdout).toContain('[0] hello again, volume');
    expect(tailed.stdout).toContain('[0] volume: read-only');
    expect(tailed.stdout).toContain('[1] volume: read-only');
    expect(tailed.stdout).not.toContain('WRITABLE');
    expect((await api.waitJob(id)).status).toBe('completed');

    const after = await cycle(['job', 'pull', id, '--json'], { cwd: out, env });
    expect(JSON.parse(after.stdout).artifacts.map((a: { path: string; skipped: boolean }) => [path.basename(a.path), a.skipped])).toEqual([
      ['first.txt', true],
      ['second.txt', false],
    ]);
    expect(await fs.readFile(path.join(out, id, 'second.txt'), 'utf8')).toBe('two\n');
    expect(await fs.readFile(path.join(data, 'words.txt'), 'utf8')).toBe('hello again, volume\n');
  });
});
