import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { createProgram, main } from '../../src/cli.js';
import { Capture, cycleswapProject, tempDir, writeFiles, runMain } from '../helpers/context.js';
import { runWithStdoutClosed } from '../helpers/binary.js';
import fs from 'node:fs/promises';
import { PassThrough } from 'node:stream';

const bin = path.join(import.meta.dirname, '..', '..', 'bin', 'cycle.js');
const execFileAsync = promisify(execFile);

async function cli(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const cwd = options.cwd ?? (await tempDir());
  return runMain(args, { env: { HOME: cwd, XDG_CONFIG_HOME: path.join(cwd, '.config'), PATH: process.env.PATH, ...options.env }, cwd });
}

async function binary(args: string[], cwd: string, env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [bin, ...args], { cwd, env: { PATH: process.env.PATH, HOME: cwd, ...env } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function allCommands(command: Command, prefix: string[] = []): string[][] {
  return command.commands.flatMap((c) => [[...prefix, c.name()], ...allCommands(c, [...prefix, c.name()])]);
}

describe('the cycle binary', () => {
  it('--version prints the package version', async () => {
    const { stdout, code } = await binary(['--version'], await tempDir());
    expect(code).toBe(0);
    expect(stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('an invalid project exits 3 with no stack trace', async () => {
    const root = await cycleswapProject();
    await writeFiles(root, { '.cycleswap/manifest.toml': '[main]\nname = 1\n' });
    const { code, stdout, stderr } = await binary(['project', 'validate'], root);
    expect(code).toBe(3);
    expect(stdout).toContain('.cycleswap/manifest.toml:2:8: error: main.name:');
    expect(stderr + stdout).not.toMatch(/\n\s+at /);
    expect(stdout + stderr).not.toContain('\x1b['); // not a TTY: no colour
  });

  it('no project → exit 3 with how to create one', async () => {
    const { code, stderr } = await binary(['project', 'hash'], await tempDir());
    expect(code).toBe(3);
    expect(stderr).toContain('error: no project found');
    expect(stderr).toContain('hint: run `cycle project init`');
  });
});

describe('output into a closed pipe (cycle … | head -1)', () => {
  it('--help ends quietly with exit 0', async () => {
    const cwd = await tempDir();
    try {
      expect(await runWithStdoutClosed(['--help'], { cwd, env: { PATH: process.env.PATH, HOME: cwd } })).toEqual({ code: 0, stderr: '' });
    } finally {
      await fs.rm(cwd, { recursive: true, force: true });
    }
  });

  it('a command ends quietly with its own exit code (validate of an invalid project: 3)', async () => {
    const root = await cycleswapProject({ '.cycleswap/manifest.toml': '[main]\nname = 1\n' });
    try {
      expect(await runWithStdoutClosed(['project', 'validate', '--json'], { cwd: root, env: { PATH: process.env.PATH, HOME: root } })).toEqual({
        code: 3,
        stderr: '',
      });
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});

describe('cli core', () => {
  it('every command has --help with an example', async () => {
    const program = await createProgram();
    const paths = allCommands(program);
    expect(paths.length).toBeGreaterThan(5);
    for (const commandPath of paths) {
      const { code, stdout } = await cli([...commandPath, '--help']);
      expect(code, commandPath.join(' ')).toBe(0);
      if (commandPath.length === 1 && program.commands.find((c) => c.name() === commandPath[0])!.commands.length > 0) continue;
      expect(stdout, commandPath.join(' ')).toContain('Examples:');
      expect(stdout).toContain(`$ cycle ${commandPath.join(' ')}`);
    }
  });

  it('an unknown command is a usage error with "did you mean"', async () => {
    const { code, stderr } = await cli(['projet']);
    expect(code).toBe(2);
    expect(stderr).toContain("unknown command 'projet'");
    expect(stderr).toContain('Did you mean project?');
    const sub = await cli(['project', 'validat']);
    expect(sub.code).toBe(2);
    expect(sub.stderr).toContain('Did you mean validate?');
  });

  it('unknown flags and bad choices are usage errors (exit 2)', async () => {
    expect((await cli(['project', 'validate', '--jsn'])).code).toBe(2);
    const bad = await cli(['project', 'init', '--format', 'docker']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('Allowed choices are cycleswap, computalot');
  });

  it('help exit-codes lists every code', async () => {
    const { stdout, code } = await cli(['help', 'exit-codes']);
    expect(code).toBe(0);
    for (const n of [0, 1, 2, 3, 4, 5, 6, 7, 130]) expect(stdout).toMatch(new RegExp(`^\\s+${n}\\s`, 'm'));
  });

  it('help <command> shows that command; an unknown topic is a usage error', async () => {
    expect((await cli(['help', 'project', 'init'])).stdout).toContain('--template');
    expect((await cli(['help', 'nothing'])).code).toBe(2);
  });

  it('an unexpected error prints one line and how to get details; --debug adds the stack', async () => {
    const root = await cycleswapProject();
    const run = async (extra: string[]) => {
      const stderr = new Capture();
      const code = await main(['node', 'cycle', 'project', 'validate', ...extra], {
        io: { stdout: new Capture(), stderr, stdin: new PassThrough() },
        env: {},
        cwd: root,
        handleSignals: false,
        contextFactory: async () => {
          throw new TypeError('boom\nsecond line');
        },
      });
      return { code, stderr: stderr.text };
    };
    const plain = await run([]);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toBe('error: boom\nhint: this is unexpected; run the command again with --debug and report the output\n');
    const debug = await run(['--debug']);
    expect(debug.stderr).toMatch(/TypeError: boom[\s\S]*\n\s+at /);
  });

  it('--quiet silences progress but not data', async () => {
    const root = await cycleswapProject();
    const loud = await cli(['project', 'validate'], { cwd: root });
    expect(loud.stderr).toContain('is valid');
    const quiet = await cli(['project', 'validate', '--quiet'], { cwd: root });
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).toBe('');
  });

  it('completion scripts name every command', async () => {
    for (const shell of ['bash', 'zsh', 'fish']) {
      const { stdout, code } = await cli(['completion', shell]);
      expect(code).toBe(0);
      for (const word of ['project', 'validate', 'doctor', '--template']) expect(stdout).toContain(word.replace(/^--/, shell === 'fish' ? '' : '--'));
    }
    expect((await cli(['completion', 'powershell'])).code).toBe(2);
  });
});
