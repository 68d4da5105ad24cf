import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cycle, testProjectsOfFile } from '../helpers/e2e.js';
import { writeFiles } from '../helpers/context.js';

const { project } = testProjectsOfFile();

// The job's cgroup, v2 or v1 (this machine has v1; others have v2).
const READ_LIMITS = `
if [ -f /sys/fs/cgroup/memory.max ]; then echo "memory=$(cat /sys/fs/cgroup/memory.max)"; echo "pids=$(cat /sys/fs/cgroup/pids.max)"
else echo "memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"; echo "pids=$(cat /sys/fs/cgroup/pids/pids.max)"; fi
`;
const limitsIn = (stdout: string): { memory: string; pids: string } => ({
  memory: /^memory=(.*)$/m.exec(stdout)?.[1] ?? '',
  pids: /^pids=(.*)$/m.exec(stdout)?.[1] ?? '',
});

describe('project test: the platforms limits on job containers', () => {
  it('a job sees 90% of the host RAM and 4096 processes in its cgroup; --skip-limits lifts both', async () => {
    const p = await project({ run: READ_LIMITS });
    const limited = await cycle(['project', 'test'], { cwd: p.root });
    expect(limited.code, limited.stderr).toBe(0);
    const { memory, pids } = limitsIn(limited.stdout);
    // The kernel rounds the limit down to whole pages.
    expect(Math.abs(Number(memory) - Math.floor(os.totalmem() * 0.9))).toBeLessThan(4096);
    expect(pids).toBe('4096');

    const skipped = await cycle(['project', 'test', '--skip-limits'], { cwd: p.root });
    expect(skipped.code, skipped.stderr).toBe(0);
    const lifted = limitsIn(skipped.stdout);
    // cgroup v2 says "max"; v1 says the largest page-aligned 64-bit number.
    expect(lifted.memory === 'max' || BigInt(lifted.memory) > BigInt(os.totalmem())).toBe(true);
    expect(lifted.pids).toBe('max');
  });

  it('a job over its memory limit (CYCLE_MEMORY_LIMIT) fails, exit 6, saying it ran out of memory and the limit', async () => {
    // tail keeps a line without a newline whole in memory: 512 MiB of zeros.
    const p = await project({ run: 'head -c 512m /dev/zero | tail -n 1 >/dev/null\necho "survived"\n' });
    const result = await cycle(['project', 'test'], { cwd: p.root, env: { CYCLE_MEMORY_LIMIT: '64m' } });
    expect(result.code, result.stderr).toBe(6);
    expect(result.stderr).toContain('error: run.sh failed: ran out of memory (limit 64.0 MiB)');

    const bad = await cycle(['project', 'test'], { cwd: p.root, env: { CYCLE_MEMORY_LIMIT: 'a lot' } });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('CYCLE_MEMORY_LIMIT="a lot": expected a memory size');
  });
});

describe('project test: volumes', () => {
  it('are read-only (a write fails inside the job); builtin/<name> mounts at /volumes/builtin/<name> from .cycle/volumes/builtin/<name> or --volume', async () => {
    const p = await project({
      manifest: { volumes: ['data', 'builtin/models'] },
      run: 'cat /volumes/data/in.txt /volumes/builtin/models/weights.txt\nif echo x > /volumes/builtin/models/new.txt; then echo "builtin writable"; fi\necho x > /volumes/data/out.txt\n',
    });
    await writeFiles(p.root, { '.cycle/volumes/data/in.txt': 'data-in\n', '.cycle/volumes/builtin/models/weights.txt': 'weights-default\n' });
    const result = await cycle(['project', 'test'], { cwd: p.root });
    expect(result.code).toBe(6);
    expect(result.stdout).toContain('data-in\nweights-default\n');
    expect(result.stdout).not.toContain('builtin writable');
    expect(result.stderr).toMatch(/\/volumes\/data\/out\.txt: Read-only file system/);
    expect(await fs.readdir(path.join(p.root, '.cycle/volumes/data'))).toEqual(['in.txt']);

    const other = path.join(p.root, 'other-models');
    await writeFiles(other, { 'weights.txt': 'weights-flag\n' });
    const flagged = await cycle(['project', 'test', '--volume', `builtin/models=${other}`], { cwd: p.root });
    expect(flagged.stdout).toContain('weights-flag\n');
  });
});
