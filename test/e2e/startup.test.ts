import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { BIN } from '../helpers/e2e.js';
import { tempDir, writeFiles } from '../helpers/context.js';

const execFileAsync = promisify(execFile);

// A module hook that reports every module the binary loads (to stderr, one URL a line).
const hooks = `export async function load(url, context, next) { process.stderr.write('LOADED ' + url + '\\n'); return next(url, context); }`;
const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`;

/** The dist/ modules, packages and Node built-ins (`node:…`) a run of the binary loads. */
async function loadedModules(args: string[], cwd: string): Promise<string[]> {
  const { stderr } = await execFileAsync(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(register)}`, BIN, ...args], {
    cwd,
    env: { PATH: process.env.PATH, HOME: cwd, NO_COLOR: '1' },
  });
  const root = path.dirname(path.dirname(BIN));
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('LOADED '))
    .map((line) => line.slice('LOADED '.length))
    .map((url) => (url.startsWith('file://') ? path.relative(root, new URL(url).pathname) : url))
    .map((file) => file.replace(/^.*node_modules\/((@[^/]+\/)?[^/]+)\/.*$/, 'package:$1'));
}

describe('start-up: what `cycle project validate` loads (budget: 2x `node -e 0`)', () => {
  it("an unchanged valid project: neither zod nor the TOML parser nor child_process, and no other group's declarations", async () => {
    const root = await tempDir('cycle-e2e-startup-');
    await writeFiles(root, {
      '.cycleswap/manifest.toml': '[main]\nname = "startup"\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n',
      '.cycleswap/run.sh': 'echo hello\n',
      '.cycleswap/build.sh': 'true\n',
    });
    // The first run checks the manifest's text and caches the result.
    const first = await loadedModules(['project', 'validate'], root);
    expect(first).toContain('package:zod');
    await fs.access(path.join(root, '.cycle', 'manifest-cache.json'));
    const again = await loadedModules(['project', 'validate'], root);
    expect(again).toContain('dist/commands/project/validate.command.js');
    expect(again).not.toContain('package:zod');
    expect(again).not.toContain('package:smol-toml');
    expect(again).not.toContain('node:child_process');
    expect(again.filter((file) => /^dist\/commands\/(?!project\/).*\.command\.js$/.test(file))).toEqual([]);
    // Help still lists every group and command.
    const { stdout } = await execFileAsync(process.execPath, [BIN, '--help'], { cwd: root });
    for (const command of ['project', 'auth', 'job', 'volume', 'artifacts', 'recipe', 'account', 'kv', 'server', 'server-gc', 'doctor', 'completion', 'help'])
      expect(stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
  });
});
