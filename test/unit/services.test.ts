import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseComputalotManifest, type ComputalotManifest, type Service } from '../../src/project/computalot.js';
import { noShellReason, SERVICE_FAILED_EXIT, ServiceLog, servicesScript, serviceFailureReason, withServices } from '../../src/runner/services.js';
import { runProjectTask } from '../../src/runner/task-service.js';
import type { ContainerSpec } from '../../src/docker/driver.js';
import { FakeDocker } from '../helpers/fake-docker.js';
import { taskSpec } from '../../src/runner/spec.js';
import { MarkedLineFilter } from '../../src/runner/progress.js';
import { jobContainer } from '../../src/runner/limits.js';
import type { TaskOutcome } from '../../src/runner/task.js';
import { shellQuote } from '../../src/util/shell.js';
import { tempDir } from '../helpers/context.js';

/** A manifest as the loader makes it (defaults applied), with these services. */
function manifestWith(services: unknown[], extra: Record<string, unknown> = {}): ComputalotManifest {
  const text = JSON.stringify({
    version: 1,
    runtime: { kind: 'oci', sandbox: 'gvisor', workdir: '/workspace', services },
    entrypoint: { command: ['python3', 'job.py'] },
    ...extra,
  });
  const parsed = parseComputalotManifest(text);
  if (!parsed.manifest) throw new Error(`test manifest invalid: ${JSON.stringify(parsed.diagnostics)}`);
  return parsed.manifest;
}
const servicesOf = (services: unknown[]): Service[] => manifestWith(services).runtime.services;

/** Everything a shell might read as syntax, in one value. */
const HOSTILE = `it's "quoted" $(touch pwned) \`touch pwned2\` $HOME \\ ; & | > < * ?\nsecond line\t'`;

describe('shellQuote', () => {
  it.each(['', 'plain', "it's", '$(touch x)', '`x`', 'a\nb', '\\', "'''", HOSTILE])('gives %j back as one word to sh', (value) => {
    const echoed = spawnSync('sh', ['-c', `printf '%s' ${shellQuote(value)}`], { encoding: 'utf8' });
    expect(echoed.stdout).toBe(value);
  });
});

describe('taskSpec with runtime.services', () => {
  const base = {
    imageId: 'sha256:abc',
    name: 'cycle-test-task',
    labels: {},
    payload: {},
    artifactsDir: '/tmp/none',
    mounts: [],
    gpus: false,
    container: jobContainer({ skipLimits: true, gvisorRegistered: false, env: {} }),
    source: () => {
      throw new Error('OCI projects copy no source');
    },
  };
  const project = (manifest: ComputalotManifest) => ({ format: 'computalot' as const, root: '/p', name: 'p', manifest, diagnostics: [] });

  it('without services: the entrypoint itself, as before', () => {
    const spec = taskSpec({ ...base, project: project(manifestWith([])) });
    expect(spec.entrypoint).toBe('python3');
    expect(spec.command).toEqual(['job.py']);
    expect(spec.workdir).toBe('/workspace');
  });

  it('with services: /bin/sh runs the supervisor, which gets the entrypoint (or the runner command) as its arguments', () => {
    const manifest = manifestWith([{ name: 'web', command: ['python3', '-m', 'http.server'] }], {
      entrypoint: { command: ['python3', 'job.py'], env: { A: '1' } },
    });
    const spec = taskSpec({ ...base, project: project(manifest) });
    expect(spec.entrypoint).toBe('/bin/sh');
    expect(spec.command[0]).toBe('-c');
    expect(spec.command[1]).toBe(servicesScript(manifest.runtime.services, '/workspace'));
    expect(spec.command.slice(2)).toEqual(['cycle-services', 'python3', 'job.py']);
    // The task's own settings are untouched: the runner protocol sees the same container.
    expect(spec.workdir).toBe('/workspace');
    expect(spec.env).toEqual({ A: '1' });
    expect(spec.resultRequired).toBe(true);

    const runner = taskSpec({ ...base, project: project(manifest), runnerCommand: ['python3', 'other.py', 'x'] });
    expect(runner.command.slice(2)).toEqual(['cycle-services', 'python3', 'other.py', 'x']);
  });

  it('a relative cwd is resolved against runtime.workdir, an absolute one kept', () => {
    const script = servicesScript(
      servicesOf([
        { name: 'a', command: ['x'], cwd: 'sub/dir' },
        { name: 'b', command: ['y'], cwd: '/opt/b' },
      ]),
      '/workspace',
    );
    expect(script).toContain("cd '/workspace/sub/dir' || exit 1");
    expect(script).toContain("cd '/opt/b' || exit 1");
  });
});

describe('ServiceLog: the host side of the supervisor', () => {
  const services = servicesOf([
    { name: 'web', command: ['x'], ready_timeout_s: 7, healthcheck: { command: ['true'] } },
    { name: 'db', command: ['y'] },
  ]);
  const failed = (exitCode: number): TaskOutcome => ({ status: 'failed', exitCode, reason: `exited with code ${exitCode}`, durationMs: 1 });

  it('forwards everything but the marker, split anywhere across chunks; keeps the last lines per service', () => {
    let forwarded = '';
    const log = new ServiceLog(services, (text) => (forwarded += text));
    const stream =
      '[service web] one\n[service db] db says\nplain stderr\n' +
      Array.from({ length: 7 }, (_, i) => `[service web] line ${i}\n`).join('') +
      '[service web] not healthy within 7s\nCOMPUTALOT_SERVICE_FAILED:web:timeout\n';
    // One character at a time: the worst split.
    for (const char of stream) log.push(Buffer.from(char));
    log.flush();
    expect(forwarded).toBe(stream.replace('COMPUTALOT_SERVICE_FAILED:web:timeout\n', ''));
    expect(log.lastLines('web')).toEqual(['line 3', 'line 4', 'line 5', 'line 6', 'not healthy within 7s']);
    expect(log.lastLines('db')).toEqual(['db says']);
    expect(log.failure()).toEqual({ index: 0, name: 'web', cause: { kind: 'timeout' } });
    expect(log.explain(failed(SERVICE_FAILED_EXIT)).reason).toBe(
      'service "web" was not healthy within 7s (runtime.services[0]; fix the service or its healthcheck, or raise its ready_timeout_s); last output: line 3 | line 4 | line 5 | line 6 | not healthy within 7s',
    );
  });

  it('an exit before it was healthy names the code and the restart fix', () => {
    const log = new ServiceLog(services, () => undefined);
    log.push('[service db] boom\n[service db] exited with code 5\nCOMPUTALOT_SERVICE_FAILED:db:exited:5');
    log.flush();
    expect(log.explain(failed(SERVICE_FAILED_EXIT)).reason).toBe(
      'service "db" exited with code 5 before it was healthy (runtime.services[1]; a service must keep running, or set "restart": "on_failure"); last output: boom | exited with code 5',
    );
  });

  it('leaves the outcome alone without the marker, with another exit code, for an unknown name, or after an OOM kill', () => {
    const plain = new ServiceLog(services, () => undefined);
    plain.push('[service web] fine\n');
    expect(plain.explain(failed(SERVICE_FAILED_EXIT)).reason).toBe(`exited with code ${SERVICE_FAILED_EXIT}`);

    const marked = new ServiceLog(services, () => undefined);
    marked.push('COMPUTALOT_SERVICE_FAILED:web:timeout\n');
    expect(marked.explain(failed(1)).reason).toBe('exited with code 1');
    expect(marked.explain({ ...failed(SERVICE_FAILED_EXIT), outOfMemory: true }).reason).toBe(`exited with code ${SERVICE_FAILED_EXIT}`);

    const unknown = new ServiceLog(services, () => undefined);
    unknown.push('COMPUTALOT_SERVICE_FAILED:nope:timeout\n');
    expect(unknown.failure()).toBeUndefined();
  });

  it('a failure with no output says so; long lines are cut', () => {
    expect(serviceFailureReason({ index: 1, name: 'db', cause: { kind: 'timeout' } }, services[1]!, [])).toBe(
      'service "db" was not healthy within 60s (runtime.services[1]; fix the service, or raise its ready_timeout_s); last output: (none)',
    );
    const log = new ServiceLog(services, () => undefined);
    log.push(`[service web] ${'x'.repeat(5000)}\n`);
    expect(log.lastLines('web')[0]).toBe(`${'x'.repeat(200)}…`);
  });
});

/** The shells the script must run on: dash (/bin/sh here), and busybox where it is installed. */
const shells = [['sh'], ...(spawnSync('busybox', ['true']).status === 0 ? [['busybox', 'sh']] : [])];

interface ScriptRun {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs the generated script as the container would (`sh -c SCRIPT cycle-services ENTRYPOINT...`), in `dir`. */
function runScript(shell: string[], services: Service[], entrypoint: string[], dir: string): Promise<ScriptRun> {
  const { entrypoint: program, command } = withServices(entrypoint, services, dir);
  expect(program).toBe('/bin/sh');
  const started = Date.now();
  const child = spawn(shell[0]!, [...shell.slice(1), ...command], { cwd: dir, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TMPDIR: dir } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, seconds: (Date.now() - started) / 1000 }));
  });
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

describe.each(shells)('the supervisor script, run for real by %s', (...shell) => {
  it('runs the entrypoint once the healthcheck passes, keeps its stdout clean and its exit code', async () => {
    const dir = await tempDir('cycle-services-');
    const services = servicesOf([
      // Ready only after a while: the healthcheck fails first.
      {
        name: 'web',
        command: ['sh', '-c', 'echo starting; sleep 0.6; : > ready; echo listening; exec sleep 30'],
        healthcheck: { command: ['test', '-f', 'ready'] },
      },
    ]);
    const run = await runScript(shell, services, ['sh', '-c', 'if [ -f ready ]; then echo "saw ready"; fi; echo "COMPUTALOT_PROGRESS:{}"; exit 3'], dir);
    expect(run.code, run.stderr).toBe(3);
    expect(run.stdout).toBe('saw ready\nCOMPUTALOT_PROGRESS:{}\n');
    expect(run.stderr).toContain('[service web] starting\n');
    expect(run.stderr).toContain('[service web] listening\n');
    expect(run.stderr).toContain('[service web] healthy\n');
    expect(run.stderr).not.toContain('COMPUTALOT_SERVICE_FAILED');
    // Its state folder is gone with it.
    expect((await fs.readdir(dir)).sort()).toEqual(['ready']);
  });

  it('hostile values (quotes, $(), backquotes, newlines) in command, cwd, env and healthcheck arrive as themselves', async () => {
    const dir = await tempDir('cycle-services-');
    const cwd = `dir ${HOSTILE.replace(/\//g, '')}`;
    await fs.mkdir(path.join(dir, cwd));
    const services = servicesOf([
      {
        name: 'x.y-z_1',
        command: ['sh', '-c', 'printf %s "$1" > arg; printf %s "$HOSTILE_VALUE" > env; exec sleep 30', 'svc', HOSTILE],
        cwd,
        env: { HOSTILE_VALUE: HOSTILE },
        healthcheck: { command: ['sh', '-c', '[ "$1" = "$HOSTILE_VALUE" ] && [ -f env ]', 'hc', HOSTILE] },
      },
    ]);
    const run = await runScript(shell, services, ['sh', '-c', 'echo "entry in $(pwd)"; printf %s "${HOSTILE_VALUE-unset}"'], dir);
    expect(run.code, run.stderr).toBe(0);
    expect(await fs.readFile(path.join(dir, cwd, 'arg'), 'utf8')).toBe(HOSTILE);
    expect(await fs.readFile(path.join(dir, cwd, 'env'), 'utf8')).toBe(HOSTILE);
    // The entrypoint keeps the container's cwd and env: the service's are its own.
    expect(run.stdout).toBe(`entry in ${dir}\nunset`);
    for (const where of [dir, path.join(dir, cwd)]) {
      expect(await exists(path.join(where, 'pwned'))).toBe(false);
      expect(await exists(path.join(where, 'pwned2'))).toBe(false);
    }
  });

  it('a service never healthy fails within its ready_timeout_s, with the marker and its last output; the entrypoint never runs', async () => {
    const dir = await tempDir('cycle-services-');
    const services = servicesOf([
      { name: 'ok', command: ['sh', '-c', 'exec sleep 30'] },
      {
        name: 'slow',
        command: ['sh', '-c', 'echo "loading model"; exec sleep 30'],
        ready_timeout_s: 1.5,
        healthcheck: { command: ['sh', '-c', 'echo "connection refused" >&2; exit 7'] },
      },
    ]);
    const run = await runScript(shell, services, ['sh', '-c', ': > entry-ran'], dir);
    expect(run.code, run.stderr).toBe(SERVICE_FAILED_EXIT);
    expect(await exists(path.join(dir, 'entry-ran'))).toBe(false);
    expect(run.seconds).toBeGreaterThanOrEqual(1.5);
    expect(run.seconds).toBeLessThan(1.5 + 5); // the ~1 s of stopping, and a loaded machine
    expect(run.stderr).toMatch(/COMPUTALOT_SERVICE_FAILED:slow:timeout\n$/);

    // What the host makes of it.
    const log = new ServiceLog(services, () => undefined);
    log.push(run.stderr);
    log.flush();
    expect(log.explain({ status: 'failed', exitCode: run.code ?? -1, durationMs: 1 }).reason).toBe(
      'service "slow" was not healthy within 1.5s (runtime.services[1]; fix the service or its healthcheck, or raise its ready_timeout_s); last output: loading model | not healthy within 1.5s: the last healthcheck exited with code 7 | connection refused',
    );
  });

  it('a service that exits (restart "never") fails at once, not at its timeout', async () => {
    const dir = await tempDir('cycle-services-');
    const services = servicesOf([{ name: 'crash', command: ['sh', '-c', 'echo "port in use" >&2; exit 5'], ready_timeout_s: 30 }]);
    const run = await runScript(shell, services, ['sh', '-c', ': > entry-ran'], dir);
    expect(run.code, run.stderr).toBe(SERVICE_FAILED_EXIT);
    expect(run.seconds).toBeLessThan(10);
    expect(await exists(path.join(dir, 'entry-ran'))).toBe(false);
    expect(run.stderr).toContain('[service crash] port in use\n[service crash] exited with code 5\nCOMPUTALOT_SERVICE_FAILED:crash:exited:5\n');
  });

  it('restart "on_failure" starts it again after a failure; without a healthcheck it is healthy once it keeps running', async () => {
    const dir = await tempDir('cycle-services-');
    const services = servicesOf([
      {
        name: 'flaky',
        restart: 'on_failure',
        command: ['sh', '-c', 'echo x >> starts; n=$(wc -l < starts); echo "start $n"; [ "$n" -ge 2 ] || exit 1; exec sleep 30'],
        ready_timeout_s: 20,
      },
    ]);
    const run = await runScript(shell, services, ['sh', '-c', 'wc -l < starts'], dir);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.trim()).toBe('2');
    expect(run.stderr).toContain('[service flaky] exited with code 1; starting it again in 1s (restart: on_failure)\n[service flaky] start 2\n');
    expect(run.stderr).toContain('[service flaky] running (no healthcheck)\n');
  });
});

describe('MarkedLineFilter (the services marker, progress lines)', () => {
  it('holds a possible marked line only up to its cap, then passes it on as output', () => {
    let output = '';
    const marked: string[] = [];
    const filter = new MarkedLineFilter(
      'MARK:',
      (text) => (output += text),
      (rest) => marked.push(rest),
    );
    filter.push('MA');
    expect(output).toBe('');
    filter.push('RK:ok\nMARK:');
    expect(marked).toEqual(['ok']);
    const chunk = 'x'.repeat(64 * 1024);
    for (let sent = 0; sent <= MarkedLineFilter.MAX_MARKED_LINE; sent += chunk.length) filter.push(chunk);
    expect(output.length).toBeGreaterThan(MarkedLineFilter.MAX_MARKED_LINE);
    expect(output.startsWith('MARK:xxx')).toBe(true);
    filter.push('\nMARK:again\n');
    filter.flush();
    expect(marked).toEqual(['ok', 'again']);
  });
});

describe('runProjectTask with runtime.services (fake Docker)', () => {
  const services = [{ name: 'web', command: ['python3', '-m', 'http.server'], ready_timeout_s: 3, healthcheck: { command: ['true'] } }];
  async function run(docker: FakeDocker, manifestServices: unknown[]): Promise<{ outcome: TaskOutcome; stderr: string; spec: ContainerSpec }> {
    const manifest = manifestWith(manifestServices);
    const image = docker.addImage({ tags: ['cycle/p:1'], layers: ['l'], labels: {} });
    const work = await tempDir('cycle-services-task-');
    let stderr = '';
    const { outcome } = await runProjectTask({
      docker,
      project: { format: 'computalot', root: work, name: 'p', manifest, diagnostics: [] },
      imageId: image.id,
      name: 'cycle-test-services',
      labels: {},
      payload: {},
      mounts: [],
      gpus: false,
      container: jobContainer({ skipLimits: true, gvisorRegistered: false, env: {} }),
      artifacts: { liveDir: path.join(work, 'live'), storeDir: path.join(work, 'store') },
      callbacks: { stdout: () => undefined, stderr: (chunk) => (stderr += chunk.toString()), progress: () => undefined },
    });
    const spec = docker.called('runContainer').at(-1) as ContainerSpec;
    return { outcome, stderr, spec };
  }

  it('the supervisor runs as /bin/sh; its marker becomes the reason and stays out of the log', async () => {
    const docker = new FakeDocker();
    docker.onRun = (_spec, io) => {
      for (const part of ['[service web] listening on 8', '080\n[service web] not healthy within 3s\nCOMPUTALOT_SERV', 'ICE_FAILED:web:timeout\n'])
        io.stderr(Buffer.from(part));
      return SERVICE_FAILED_EXIT;
    };
    const { outcome, stderr, spec } = await run(docker, services);
    expect(spec.entrypoint).toBe('/bin/sh');
    expect(spec.command.slice(2)).toEqual(['cycle-services', 'python3', 'job.py']);
    expect(outcome).toMatchObject({ status: 'failed', exitCode: SERVICE_FAILED_EXIT });
    expect(outcome.reason).toBe(
      'service "web" was not healthy within 3s (runtime.services[0]; fix the service or its healthcheck, or raise its ready_timeout_s); last output: listening on 8080 | not healthy within 3s',
    );
    expect(stderr).toBe('[service web] listening on 8080\n[service web] not healthy within 3s\n');
  });

  it('an image without /bin/sh: the reason names runtime.services and the fix, not only Docker', async () => {
    const docker = new FakeDocker();
    const daemonMessage = 'exec: "/bin/sh": stat /bin/sh: no such file or directory';
    docker.onRun = () => ({ exitCode: 127, dockerFailure: { kind: 'command-not-found', daemonMessage } });
    const { outcome } = await run(docker, services);
    expect(outcome.status).toBe('failed');
    expect(outcome.dockerFailure).toBeUndefined();
    expect(outcome.reason).toBe(noShellReason(daemonMessage));
    expect(outcome.reason).toMatch(/^runtime\.services needs \/bin\/sh in the image .* fix: build from an image with a POSIX shell/);
  });

  it('without services: the entrypoint itself, and stderr untouched (a marker from the job means nothing)', async () => {
    const docker = new FakeDocker();
    docker.onRun = (_spec, io) => {
      io.stderr(Buffer.from('COMPUTALOT_SERVICE_FAILED:web:timeout\n'));
      return SERVICE_FAILED_EXIT;
    };
    const { outcome, stderr, spec } = await run(docker, []);
    expect(spec.entrypoint).toBe('python3');
    expect(outcome.reason).toBe(`exited with code ${SERVICE_FAILED_EXIT}`);
    expect(stderr).toBe('COMPUTALOT_SERVICE_FAILED:web:timeout\n');
  });
});
