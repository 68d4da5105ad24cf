import { describe, expect, it } from 'vitest';
import { checkedApiUrl } from '../../src/commands/daemon/run.js';
import { runCycle, tempDir } from '../helpers/context.js';

/** `cycle daemon run`'s checks before it starts: where the token comes from, and no token in clear to another host. */
describe('cycle daemon run: its checks before it starts', () => {
  it('refuses plain http:// to another host unless --insecure, naming the flag and https', async () => {
    const cwd = await tempDir('cycle-daemon-run-');
    const result = await runCycle(['daemon', 'run', '--api-url', 'http://queue.example:8787', '--name', 'gpu-a'], {
      cwd,
      env: { CYCLE_MACHINE_TOKEN: 'cyc_machine_x' },
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--insecure/);
    expect(result.stderr).toMatch(/https/);
    expect(checkedApiUrl('http://127.0.0.1:8787/', false)).toBe('http://127.0.0.1:8787');
    expect(checkedApiUrl('http://localhost:8787', false)).toBe('http://localhost:8787');
    expect(checkedApiUrl('http://[::1]:8787', false)).toBe('http://[::1]:8787');
    expect(checkedApiUrl('https://queue.example:8787', false)).toBe('https://queue.example:8787');
    expect(checkedApiUrl('http://queue.example:8787', true)).toBe('http://queue.example:8787');
    expect(() => checkedApiUrl('ftp://queue.example', true)).toThrow(/https/);
  });

  it('takes the token from CYCLE_MACHINE_TOKEN or --token-file only, and says so when there is none', async () => {
    const cwd = await tempDir('cycle-daemon-run-');
    const none = await runCycle(['daemon', 'run', '--api-url', 'https://queue.example:8787', '--name', 'gpu-a'], { cwd, env: {} });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/CYCLE_MACHINE_TOKEN/);
    expect(none.stderr).toMatch(/--token-file/);
    const missing = await runCycle(['daemon', 'run', '--api-url', 'https://queue.example:8787', '--name', 'gpu-a', '--token-file', 'nope'], { cwd, env: {} });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--token-file nope/);
  });

  it('checks --name and --slots', async () => {
    const cwd = await tempDir('cycle-daemon-run-');
    const env = { CYCLE_MACHINE_TOKEN: 'cyc_machine_x' };
    const name = await runCycle(['daemon', 'run', '--api-url', 'https://q:1', '--name', 'GPU A'], { cwd, env });
    expect(name.code).toBe(2);
    expect(name.stderr).toMatch(/--name/);
    const slots = await runCycle(['daemon', 'run', '--api-url', 'https://q:1', '--name', 'gpu-a', '--slots', '0'], { cwd, env });
    expect(slots.code).toBe(2);
    expect(slots.stderr).toMatch(/--slots 0/);
  });
});
