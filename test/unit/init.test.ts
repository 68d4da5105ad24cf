import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { run as init } from '../../src/commands/project/init.js';
import { run as validate } from '../../src/commands/project/validate.js';
import { fakeContext, tempDir } from '../helpers/context.js';
import type { Prompter } from '../../src/ui/prompt.js';

describe('project init', () => {
  it.each([
    ['cycleswap', 'python', ['.cycleswap/manifest.toml', '.cycleswap/run.sh', '.cycleswap/build.sh', 'main.py', 'pyproject.toml']],
    ['cycleswap', 'shell', ['.cycleswap/manifest.toml', '.cycleswap/run.sh', '.cycleswap/build.sh', 'main.sh']],
    ['computalot', 'python', ['computalot.project.json', 'Dockerfile', 'job.py', 'requirements.txt', '.dockerignore']],
    ['computalot', 'shell', ['computalot.project.json', 'Dockerfile', 'job.sh', '.dockerignore']],
  ] as const)('%s/%s writes a valid project from flags alone', async (format, template, files) => {
    const cwd = await tempDir();
    const { ctx, stderr } = fakeContext({ cwd });
    expect(await init({ dir: 'My Exp', format, template, force: false }, ctx)).toBe(0);
    const root = path.join(cwd, 'My Exp');
    for (const file of files) await expect(fs.stat(path.join(root, file))).resolves.toBeDefined();
    expect(stderr.text).toContain('project "my-exp"');
    if (format === 'cycleswap') {
      for (const script of ['run.sh', 'build.sh']) expect((await fs.stat(path.join(root, '.cycleswap', script))).mode & 0o777).toBe(0o755);
      expect(await fs.readFile(path.join(root, '.cycleswap/manifest.toml'), 'utf8')).toContain('name = "my-exp"');
    } else {
      expect(JSON.parse(await fs.readFile(path.join(root, 'computalot.project.json'), 'utf8')).name).toBe('my-exp');
    }
    const check = fakeContext({ cwd: root });
    expect(await validate({ json: true }, check.ctx)).toBe(0);
    expect(JSON.parse(check.stdout.text)).toMatchObject({ valid: true, errors: 0, warnings: 0 });
  });

  it('never overwrites a project without --force, and backs up what --force replaces', async () => {
    const root = await tempDir();
    const first = fakeContext({ cwd: root });
    await init({ dir: '.', format: 'cycleswap', template: 'shell', name: 'one', force: false }, first.ctx);
    await fs.writeFile(path.join(root, '.cycleswap/run.sh'), 'echo my precious work\n');
    await fs.writeFile(path.join(root, 'main.sh'), 'echo my code\n');

    const again = fakeContext({ cwd: root });
    await expect(init({ dir: '.', format: 'cycleswap', template: 'shell', name: 'two', force: false }, again.ctx)).rejects.toMatchObject({
      message: expect.stringContaining('already has a project: .cycleswap/manifest.toml, .cycleswap/run.sh, .cycleswap/build.sh'),
      hint: expect.stringContaining('--force'),
    });
    expect(await fs.readFile(path.join(root, '.cycleswap/run.sh'), 'utf8')).toBe('echo my precious work\n');

    const forced = fakeContext({ cwd: root });
    expect(await init({ dir: '.', format: 'cycleswap', template: 'shell', name: 'two', force: true }, forced.ctx)).toBe(0);
    expect(forced.stderr.text).toContain('replaced .cycleswap/run.sh');
    expect(forced.stderr.text).toContain('kept     main.sh');
    expect(await fs.readFile(path.join(root, 'main.sh'), 'utf8')).toBe('echo my code\n');
    const backups = path.join(root, '.cycle', 'backups');
    const [stamp] = await fs.readdir(backups);
    expect(await fs.readFile(path.join(backups, stamp!, '.cycleswap/run.sh'), 'utf8')).toBe('echo my precious work\n');
  });

  it('refuses to mix formats in one folder', async () => {
    const root = await tempDir();
    await init({ dir: '.', format: 'computalot', template: 'python', force: false }, fakeContext({ cwd: root }).ctx);
    await expect(init({ dir: '.', format: 'cycleswap', template: 'python', force: true }, fakeContext({ cwd: root }).ctx)).rejects.toMatchObject({
      exitCode: 2,
    });
  });

  it('rejects a bad --name with the rule and a suggestion', async () => {
    const root = await tempDir();
    await expect(
      init({ dir: '.', format: 'cycleswap', template: 'python', name: 'Bad Name', force: false }, fakeContext({ cwd: root }).ctx),
    ).rejects.toMatchObject({
      exitCode: 2,
      hint: 'try --name bad-name',
    });
  });

  it('asks for what is missing on a TTY, and only there', async () => {
    const root = await tempDir();
    const questions: string[] = [];
    const prompt: Prompter = {
      available: true,
      ask: async (q, d) => {
        questions.push(q);
        return d ?? '';
      },
      choose: async (q, choices) => {
        questions.push(q);
        return q.includes('format') ? 'computalot' : choices[1]!;
      },
      secret: async () => '',
    };
    const { ctx } = fakeContext({ cwd: root, tty: true, prompt });
    await init({ dir: 'proj', force: false }, ctx);
    expect(questions).toEqual(['Project format', 'Template', 'Project name']);
    expect(await fs.readFile(path.join(root, 'proj', 'job.sh'), 'utf8')).toContain('COMPUTALOT_PROGRESS');

    const scripted = fakeContext({ cwd: root }); // prompts throw in this context
    expect(await init({ dir: 'proj2', force: false }, scripted.ctx)).toBe(0);
    expect(await fs.readFile(path.join(root, 'proj2', '.cycleswap', 'manifest.toml'), 'utf8')).toContain('build_files = ["pyproject.toml"]');
  });
});
