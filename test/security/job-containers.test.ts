import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { cycle, docker, testProjectName, testProjectsOfFile } from '../helpers/e2e.js';
import { tempDir, writeFiles } from '../helpers/context.js';
import { GVISOR_RUNTIME, JOB_CAPABILITIES } from '../../src/runner/limits.js';
import { reclaimOutputs } from '../../src/runner/task.js';
import { CliDockerDriver } from '../../src/docker/cli-driver.js';
import { EngineDockerDriver } from '../../src/docker/engine-driver.js';
import { resolveDockerEndpoint } from '../../src/docker/endpoint.js';
import type { DockerDriver } from '../../src/docker/driver.js';

/**
 * Issue 11: job containers ran as root with every default capability, a network and no
 * sandbox. Each case here failed on that code.
 */
const { made, project } = testProjectsOfFile();

// Linux capability numbers (capability.h) of what a job keeps.
const CAPABILITY_BITS: Record<string, number> = { CHOWN: 0, DAC_OVERRIDE: 1, FOWNER: 3, FSETID: 4, KILL: 5, SETGID: 6, SETUID: 7, NET_BIND_SERVICE: 10 };

describe('job containers are locked down', () => {
  it('no new privileges, only the documented capabilities, no network but loopback', async () => {
    const p = await project({
      run: 'grep -E "^(NoNewPrivs|CapEff|CapBnd):" /proc/self/status\necho "interfaces: $(ls /sys/class/net | tr "\\n" " ")"\n',
    });
    const result = await cycle(['project', 'test'], { cwd: p.root });
    expect(result.code, result.stderr).toBe(0);
    const expected = JOB_CAPABILITIES.reduce((mask, name) => mask | (1n << BigInt(CAPABILITY_BITS[name]!)), 0n);
    expect(result.stdout).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(BigInt(`0x${/^CapEff:\s+(\w+)$/m.exec(result.stdout)?.[1]}`)).toBe(expected);
    expect(BigInt(`0x${/^CapBnd:\s+(\w+)$/m.exec(result.stdout)?.[1]}`)).toBe(expected);
    expect(result.stdout).toContain('interfaces: lo \n');
  });

  it("validation-check containers have the job's lock-down too: no new privileges, the documented capabilities, no network but loopback", async () => {
    const root = await tempDir('cycle-sec-checks-');
    const name = `sec-checks-${Date.now().toString(36)}`;
    made.push({ root, name });
    const expected = JOB_CAPABILITIES.reduce((mask, cap) => mask | (1n << BigInt(CAPABILITY_BITS[cap]!)), 0n);
    const capEff = expected.toString(16).padStart(16, '0');
    // Each check passes only when its container is locked down (they ran with Docker's defaults).
    const check = (label: string, script: string) => ({ label, command: ['sh', '-c', script] });
    await writeFiles(root, {
      Dockerfile: 'FROM ubuntu:24.04\nWORKDIR /workspace\n',
      'computalot.project.json': JSON.stringify({
        version: 1,
        name,
        runtime: { kind: 'oci', workdir: '/workspace' },
        entrypoint: { command: ['sh', '-c', 'echo {} > "$COMPUTALOT_TASK_RESULT"'] },
        validation: {
          commands: [
            check('no new privileges', 'grep -q "^NoNewPrivs:[[:space:]]*1$" /proc/self/status'),
            check('capabilities', `grep "^CapEff:" /proc/self/status; grep -q "^CapEff:[[:space:]]*${capEff}$" /proc/self/status`),
            check('no network', 'ls /sys/class/net; [ "$(ls /sys/class/net)" = lo ]'),
          ],
        },
      }),
    });
    const result = await cycle(['project', 'test'], { cwd: root });
    expect(result.code, result.stderr).toBe(0);
    for (const label of ['no new privileges', 'capabilities', 'no network']) expect(result.stderr).toContain(`✓ command ${label}`);
  });

  it('a manifest asking for "sandbox": "gvisor" runs in gVisor (scripts/setup.sh registers runsc); one without runs in runc', async () => {
    const root = await tempDir('cycle-sec-gvisor-');
    const name = testProjectName('gvisor');
    made.push({ root, name });
    const manifest = (sandbox: boolean): string =>
      JSON.stringify({
        version: 1,
        name,
        runtime: { kind: 'oci', ...(sandbox ? { sandbox: 'gvisor' } : {}), workdir: '/workspace' },
        entrypoint: { command: ['sh', '-c', 'dmesg 2>&1 | head -3; echo {} > "$COMPUTALOT_TASK_RESULT"'] },
      });
    await writeFiles(root, { Dockerfile: 'FROM ubuntu:24.04\nWORKDIR /workspace\n', 'computalot.project.json': manifest(true) });
    const sandboxed = await cycle(['project', 'test'], { cwd: root });
    expect(sandboxed.code, sandboxed.stderr).toBe(0);
    expect(sandboxed.stdout).toContain('Starting gVisor');
    expect(sandboxed.stderr).not.toContain('unsandboxed');

    await fs.writeFile(path.join(root, 'computalot.project.json'), manifest(false));
    const plain = await cycle(['project', 'test'], { cwd: root });
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).not.toContain('gVisor');
  });
});

describe('the reclaim helper (runs the job image as root to give files back) is locked down and still works', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });
  const env = { PATH: process.env.PATH, ...(process.env.DOCKER_HOST ? { DOCKER_HOST: process.env.DOCKER_HOST } : {}) };
  const engine = (): DockerDriver => {
    const endpoint = resolveDockerEndpoint(env);
    return endpoint ? new EngineDockerDriver(endpoint, { env }) : new CliDockerDriver({ env });
  };
  const cases: Array<[string, () => DockerDriver, string | undefined]> = [
    ['Engine API, runc', engine, undefined],
    ['docker CLI, runc', () => new CliDockerDriver({ env }), undefined],
    ['Engine API, gVisor', engine, GVISOR_RUNTIME],
  ];

  it.each(cases)('%s: a 0700 folder and 0600 files of another uid come back to this user', async (_, driver, runtime) => {
    const dir = await tempDir('cycle-sec-reclaim-');
    // As the job leaves them: another uid, unreadable to anyone else.
    await docker([
      'run',
      '--rm',
      '--network',
      'none',
      '--mount',
      `type=bind,source=${dir},target=/out`,
      'ubuntu:24.04',
      'sh',
      '-c',
      'mkdir -p /out/d/sub && echo x > /out/d/sub/f && echo y > /out/d/g && chmod 600 /out/d/sub/f /out/d/g && chmod 700 /out/d /out/d/sub && chown -R 1234:1234 /out/d',
    ]);
    // Run as root here, the helper is skipped: play a user that owns nothing in the folder.
    const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    const { uid, gid } = me.uid === 0 ? { uid: 4321, gid: 4321 } : me;
    vi.spyOn(process, 'getuid').mockReturnValue(uid);
    vi.spyOn(process, 'getgid').mockReturnValue(gid);
    const name = `cycle-sec-reclaim-${process.pid}-${Date.now().toString(36)}`;
    await reclaimOutputs(driver(), { image: 'ubuntu:24.04', dir, name, runtime });
    const owners: string[] = [];
    for (const entry of ['d', 'd/g', 'd/sub', 'd/sub/f']) {
      const stat = await fs.lstat(path.join(dir, entry));
      owners.push(`${entry} ${stat.uid}:${stat.gid}`);
    }
    expect(owners).toEqual(['d', 'd/g', 'd/sub', 'd/sub/f'].map((entry) => `${entry} ${uid}:${gid}`));
    expect(await docker(['ps', '-aq', '--filter', `name=${name}`])).toBe('');
  });
});
