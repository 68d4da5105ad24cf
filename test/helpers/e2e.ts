import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, inject } from 'vitest';
import { tempDir, writeFiles } from './context.js';
import { fixtureMachineEnv } from './machine-sources.js';
import { newTestRun, removeTestImages, testRunPrefix } from './test-images.js';

const execFileAsync = promisify(execFile);
export const BIN = path.join(import.meta.dirname, '..', '..', 'bin', 'cycle.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real binary (no TTY: no colours, no spinners). */
export async function cycle(
  args: string[],
  options: { cwd: string; env?: Record<string, string>; input?: string } = { cwd: process.cwd() },
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: options.cwd,
      env: { ...baseEnv(options.cwd), ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.stdin.end(options.input ?? '');
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Starts the binary without waiting (for Ctrl-C tests); collects its output. */
export function startCycle(
  args: string[],
  options: { cwd: string; env?: Record<string, string> },
): { child: ChildProcess; output: () => CliResult; exited: Promise<number> } {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd,
    env: { ...baseEnv(options.cwd), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number>((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : -1))));
  return { child, output: () => ({ code: child.exitCode ?? -1, stdout, stderr }), exited };
}

function baseEnv(cwd: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? cwd,
    XDG_CONFIG_HOME: path.join(cwd, '.xdg-config'),
    NO_COLOR: '1',
    ...(process.env.DOCKER_HOST ? { DOCKER_HOST: process.env.DOCKER_HOST } : {}),
  };
}

export async function docker(args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('docker', args, { maxBuffer: 64 << 20 });
  return stdout.trim();
}

import { waitFor } from './wait.js';

export { waitFor };

/** A `cycle daemon run` process (spawnDaemon). */
export interface DaemonProcess {
  child: ChildProcess;
  /** What it printed so far, stdout and stderr. */
  log: () => string;
  /** Its exit code, once it has ended. */
  exited: Promise<number | null>;
  /** SIGTERM unless it has ended; its exit code. */
  stop(): Promise<number | null>;
}

/**
 * `cycle daemon run` against `apiUrl` with a machine token, a heartbeat every second, on a
 * fixture machine (fixtureMachineEnv: GPUs from `fixture`, its own load from `loadFile`): the
 * real probe would find the test machine busy (the suite runs on it).
 */
export function spawnDaemon(options: { apiUrl: string; name: string; dataDir: string; token: string; fixture: string; loadFile?: string }): DaemonProcess {
  const child = spawn(process.execPath, [BIN, 'daemon', 'run', '--api-url', options.apiUrl, '--name', options.name, '--data-dir', options.dataDir], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME ?? options.dataDir,
      NO_COLOR: '1',
      CYCLE_MACHINE_TOKEN: options.token,
      CYCLE_DAEMON_HEARTBEAT_MS: '1000',
      ...fixtureMachineEnv(options.fixture, options.loadFile),
      ...(process.env.DOCKER_HOST ? { DOCKER_HOST: process.env.DOCKER_HOST } : {}),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout!.on('data', (c: Buffer) => (log += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    child,
    log: () => log,
    exited,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Waits until the daemon says it is taking work (failing with its log at the deadline). */
export async function untilTakingWork(daemon: Pick<DaemonProcess, 'log'>, timeoutMs: number, what: string): Promise<void> {
  await waitFor(
    () => /is taking work/.test(daemon.log()),
    timeoutMs,
    what,
    () => daemon.log(),
  );
}

export interface E2EProject {
  root: string;
  name: string;
}

let counter = 0;
/** Without the e2e global setup (another config), this worker's own run id. */
const fallbackRun = newTestRun();

/**
 * A project name for a test: `e2e-<run>-<slug>`, so the images it builds are this run's (the
 * global setup removes them at the end; other runs on the same daemon keep theirs).
 */
export function testProjectName(slug: string): string {
  return `${testRunPrefix(inject('testRun') ?? fallbackRun)}${slug}`;
}

/** Removes the images (and what was built on them) of these test projects, local and server-side. */
export async function removeTestProjectImages(names: readonly string[]): Promise<void> {
  await removeTestImages({ projects: (name) => names.includes(name), strayBuildSteps: false });
}

/** A .cycleswap/ project in a temp folder, with a unique name. */
export async function e2eCycleswapProject(
  options: {
    run?: string;
    build?: string;
    manifest?: Partial<{ buildFiles: string[]; volumes: string[]; env: string; cuda: string; order: string; version: string }>;
    files?: Record<string, string>;
  } = {},
): Promise<E2EProject> {
  const root = await tempDir('cycle-e2e-');
  const name = testProjectName(`${process.pid.toString(36)}-${counter++}`);
  const m = options.manifest ?? {};
  await writeFiles(root, {
    '.cycleswap/manifest.toml': `[main]
name = "${name}"
volumes = ${JSON.stringify(m.volumes ?? [])}
build_files = ${JSON.stringify(m.buildFiles ?? [])}

[ubuntu]
version = "${m.version ?? '24.04'}"

[job]
${m.cuda ? `cuda = "${m.cuda}"\n` : ''}env_vars = ${m.env ?? '{}'}
email_on_success = false
email_on_failure = false
artifact_upload_order = "${m.order ?? 'FIFO'}"
`,
    '.cycleswap/run.sh': options.run ?? 'echo "run ok"\n',
    '.cycleswap/build.sh': options.build ?? 'echo "build ok"\n',
    ...options.files,
  });
  return { root, name };
}

/**
 * The test projects of one test file: `project` makes a .cycleswap/ one (e2eCycleswapProject)
 * and lists it in `made`, where a test adds the others it makes. Their images and containers are
 * removed after the file's tests; their folders are tempDir's, removed with their test.
 */
export function testProjectsOfFile(): {
  made: E2EProject[];
  project: (options?: Parameters<typeof e2eCycleswapProject>[0]) => Promise<E2EProject>;
} {
  const made: E2EProject[] = [];
  afterAll(async () => {
    for (const p of made) await removeProjectImages(p.root);
  });
  const project = async (options: Parameters<typeof e2eCycleswapProject>[0] = {}): Promise<E2EProject> => {
    const p = await e2eCycleswapProject(options);
    made.push(p);
    return p;
  };
  return { made, project };
}

export async function lastBuild(root: string): Promise<{ hash: string; image: { id: string; tag: string } }> {
  return JSON.parse(await fs.readFile(path.join(root, '.cycle', 'last-build.json'), 'utf8'));
}

export async function imageLayers(id: string): Promise<string[]> {
  return JSON.parse(await docker(['image', 'inspect', '--format', '{{json .RootFS.Layers}}', id])) as string[];
}

/** Removes every image and container a test project made. */
export async function removeProjectImages(root: string): Promise<void> {
  const { localProjectKey } = await import('../../src/runner/images.js');
  const key = localProjectKey(root);
  const containers = (await docker(['ps', '-aq', '--filter', `label=cycle.project-key=${key}`])).split('\n').filter(Boolean);
  if (containers.length) await docker(['rm', '-f', ...containers]).catch(() => undefined);
  const images = (await docker(['images', '-q', '--filter', `label=cycle.project-key=${key}`])).split('\n').filter(Boolean);
  if (images.length) await docker(['rmi', '-f', ...new Set(images)]).catch(() => undefined);
}
