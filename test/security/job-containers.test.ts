import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cycle, e2eCycleswapProject, removeProjectImages, type E2EProject } from '../helpers/e2e.js';
import { tempDir, writeFiles } from '../helpers/context.js';
import { JOB_CAPABILITIES } from '../../src/runner/limits.js';

/**
 * Issue 11: job containers ran as root with every default capability, a network and no
 * sandbox. Each case here failed on that code.
 */
const made: E2EProject[] = [];
afterAll(async () => {
  for (const p of made) {
    await removeProjectImages(p.root);
    await fs.rm(p.root, { recursive: true, force: true });
  }
});

// Linux capability numbers (capability.h) of what a job keeps.
const CAPABILITY_BITS: Record<string, number> = { CHOWN: 0, DAC_OVERRIDE: 1, FOWNER: 3, FSETID: 4, KILL: 5, SETGID: 6, SETUID: 7, NET_BIND_SERVICE: 10 };

describe('job containers are locked down', () => {
  it('no new privileges, only the documented capabilities, no network but loopback', async () => {
    const p = await e2eCycleswapProject({
      run: 'grep -E "^(NoNewPrivs|CapEff|CapBnd):" /proc/self/status\necho "interfaces: $(ls /sys/class/net | tr "\\n" " ")"\n',
    });
    made.push(p);
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
    const name = `sec-gvisor-${Date.now().toString(36)}`;
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
