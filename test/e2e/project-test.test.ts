import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  cycle,
  docker,
  imageLayers,
  lastBuild,
  startCycle,
  testProjectName,
  testProjectsOfFile,
  waitFor,
  type CliResult,
  type E2EProject,
} from '../helpers/e2e.js';
import { tempDir, writeFiles } from '../helpers/context.js';
import { localProjectKey } from '../../src/runner/images.js';

const { made, project } = testProjectsOfFile();

async function imageCreated(id: string): Promise<string> {
  return docker(['image', 'inspect', '--format', '{{.Created}}', id]);
}

describe('project test: the build rules, on real Docker', () => {
  it('builds once, reuses the image unchanged, layers edits on the previous image; --rebuild; --clean', async () => {
    const p = await project({
      manifest: { buildFiles: ['requirements.txt'] },
      files: { 'requirements.txt': 'numpy\n' },
      build: 'echo "installing $(cat requirements.txt)"\n',
    });

    const first = await cycle(['project', 'test'], { cwd: p.root });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain('building the image from ubuntu:24.04 (no previous build image)');
    expect(first.stderr).toContain('installing numpy');
    const build1 = await lastBuild(p.root);
    const hash = (await cycle(['project', 'hash'], { cwd: p.root })).stdout.trim();
    expect(build1.hash).toBe(hash);
    expect(await docker(['image', 'inspect', '--format', '{{index .Config.Labels "cycle.build-hash"}}', build1.image.id])).toBe(hash);
    const baseLayers = await imageLayers('ubuntu:24.04');
    const layers1 = await imageLayers(build1.image.id);
    expect(layers1.slice(0, baseLayers.length)).toEqual(baseLayers);

    // Unchanged: the same image, not rebuilt (by Docker's ids and creation time, not log text).
    const created1 = await imageCreated(build1.image.id);
    const allImages = async (): Promise<string> => (await docker(['images', '-qa', '--no-trunc'])).split('\n').sort().join('\n');
    const imagesBefore = await allImages();
    const second = await cycle(['project', 'test'], { cwd: p.root });
    expect(second.code).toBe(0);
    expect((await lastBuild(p.root)).image.id).toBe(build1.image.id);
    expect(await imageCreated(build1.image.id)).toBe(created1);
    expect(await allImages()).toBe(imagesBefore);

    // A build file changes: build.sh runs on top of the previous image.
    await fs.writeFile(path.join(p.root, 'requirements.txt'), 'numpy\nscipy\n');
    const third = await cycle(['project', 'test'], { cwd: p.root });
    expect(third.code).toBe(0);
    expect(third.stderr).toContain('running build.sh on top of the previous build image');
    const build3 = await lastBuild(p.root);
    expect(build3.image.id).not.toBe(build1.image.id);
    const layers3 = await imageLayers(build3.image.id);
    expect(layers3.slice(0, layers1.length)).toEqual(layers1);
    expect(layers3.length).toBe(layers1.length + 2);

    // --rebuild: again on top of the previous image, though nothing changed.
    const rebuild = await cycle(['project', 'test', '--rebuild'], { cwd: p.root });
    expect(rebuild.code).toBe(0);
    const build4 = await lastBuild(p.root);
    expect(build4.image.id).not.toBe(build3.image.id);
    expect((await imageLayers(build4.image.id)).slice(0, layers3.length)).toEqual(layers3);

    // --clean: from the bare base image.
    const clean = await cycle(['project', 'test', '--clean'], { cwd: p.root });
    expect(clean.code).toBe(0);
    expect(clean.stderr).toContain('building the image from ubuntu:24.04 (--clean)');
    const layers5 = await imageLayers((await lastBuild(p.root)).image.id);
    expect(layers5.slice(0, baseLayers.length)).toEqual(baseLayers);
    expect(layers5).not.toContain(layers1[baseLayers.length]);
    expect(layers5.length).toBe(layers1.length);

    const both = await cycle(['project', 'test', '--rebuild', '--clean'], { cwd: p.root });
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--rebuild and --clean cannot be used together');

    const explain = await cycle(['project', 'hash', '--explain'], { cwd: p.root });
    expect(explain.stdout).toContain('unchanged since the last build');
  });

  it('build.sh sees .cycleswap/ and the build files only', async () => {
    const p = await project({
      manifest: { buildFiles: ['pyproject.toml', 'deps'] },
      files: { 'pyproject.toml': '[project]\n', 'deps/a.txt': 'a\n', 'secret.txt': 'do not read\n', 'src/main.py': 'print(1)\n' },
      build: [
        'set -e',
        'pwd',
        'find . -type f ! -path "./.cycleswap/*" | sort | tr "\\n" " "; echo',
        'test ! -e secret.txt && test ! -e src/main.py && test -e pyproject.toml && test -e deps/a.txt && echo CONTEXT_OK',
        'if grep -rq "do not read" / --include=*.txt 2>/dev/null; then echo LEAKED; exit 1; fi',
      ].join('\n'),
    });
    const result = await cycle(['project', 'test'], { cwd: p.root });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain('/app');
    expect(result.stderr).toContain('./deps/a.txt ./pyproject.toml');
    expect(result.stderr).toContain('CONTEXT_OK');
    expect(result.stderr).not.toContain('LEAKED');
  });

  it('a failing build.sh: exit 6, its exit code and last lines', async () => {
    const p = await project({ build: 'echo "compiling the thing"\necho "fatal: no compiler" >&2\nexit 4\n' });
    const result = await cycle(['project', 'test', '--quiet'], { cwd: p.root });
    expect(result.code).toBe(6);
    expect(result.stderr).toContain('error: build.sh failed with exit code 4');
    expect(result.stderr).toContain('fatal: no compiler');
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });

  it('flattens the image past the layer limit, and says so', async () => {
    const p = await project({ manifest: { buildFiles: ['v.txt'] }, files: { 'v.txt': '0' } });
    const env = { CYCLE_MAX_LAYERS: '5' };
    expect((await cycle(['project', 'test'], { cwd: p.root, env })).code).toBe(0); // base + 3
    await fs.writeFile(path.join(p.root, 'v.txt'), '1');
    const over = await cycle(['project', 'test'], { cwd: p.root, env });
    expect(over.code, over.stderr).toBe(0);
    expect(over.stderr).toMatch(/the build image has \d+ layers \(limit 5\): flattening it into one layer/);
    const layers = await imageLayers((await lastBuild(p.root)).image.id);
    expect(layers.length).toBe(3); // flattened + COPY + RUN
    const again = await cycle(['project', 'test'], { cwd: p.root, env });
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('up to date');
  });
});

describe('project test: the run', () => {
  // Both ways cycle talks to Docker: the Engine API socket (the default here) and the docker CLI.
  it.each([
    ['the Engine API', {}, 'docker: Engine API at unix:///var/run/docker.sock'],
    ['the docker CLI', { CYCLE_DOCKER_API: '0' }, 'docker: through the docker CLI'],
  ])('through %s: copies the source to /app, sets env vars and INSIDE_CYCLESWAP_CONTAINER, streams stdout and stderr', async (_transport, env, debugLine) => {
    const p = await project({
      manifest: { env: '{ GREETING = "hi there", LEARNING_RATE = "3e-4" }' },
      files: { 'src/data.txt': 'from the source\n', '.gitignore': 'ignored.txt\n', 'ignored.txt': 'x' },
      run: 'pwd\ncat src/data.txt\necho "$GREETING $LEARNING_RATE $INSIDE_CYCLESWAP_CONTAINER"\necho to-stderr >&2\ntest ! -e ignored.txt && echo IGNORED_LEFT_OUT\nmount | grep -c " /app " || true\n',
    });
    const result = await cycle(['project', 'test', '--debug'], { cwd: p.root, env });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain(debugLine);
    expect(result.stdout).toContain('/app\nfrom the source\nhi there 3e-4 1\n');
    expect(result.stdout).toContain('IGNORED_LEFT_OUT');
    expect(result.stdout).toMatch(/^0$/m); // /app is not a mount: the source was copied
    expect(result.stderr).toContain('to-stderr');
    expect(result.stdout).not.toContain('to-stderr');
  });

  it('builds again when the recorded image was deleted from Docker (docker image prune, rmi)', async () => {
    const p = await project({ run: 'echo ran-ok\n' });
    expect((await cycle(['project', 'test'], { cwd: p.root })).code).toBe(0);
    const first = await lastBuild(p.root);
    await docker(['rmi', '-f', first.image.id]);
    const again = await cycle(['project', 'test'], { cwd: p.root });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toContain('the recorded build image is gone from Docker: building it again');
    expect(again.stdout).toContain('ran-ok');
    expect((await lastBuild(p.root)).image.id).not.toBe(first.image.id);
  });

  it('mounts volumes at /volumes/<name>, from --volume or the default folder; a missing one is named', async () => {
    const p = await project({ manifest: { volumes: ['training-data', 'cache'] }, run: 'cat /volumes/training-data/x.txt; ls /volumes/cache\n' });
    const data = await tempDir();
    await writeFiles(data, { 'x.txt': 'volume content\n' });
    const missing = await cycle(['project', 'test', '--volume', `training-data=${data}`], { cwd: p.root });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('volume "cache" has no local folder');
    expect(missing.stderr).toContain('.cycle/volumes/cache');
    await writeFiles(p.root, { '.cycle/volumes/cache/marker': '' });
    const ok = await cycle(['project', 'test', '--volume', `training-data=${data}`], { cwd: p.root });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('volume content\nmarker');
    const unknown = await cycle(['project', 'test', '--volume', 'nope=/tmp'], { cwd: p.root });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('the manifest declares no volume "nope"');
  });

  it('mounts a platform volume builtin/<name> at /volumes/builtin/<name>, locally from .cycle/volumes/builtin/<name>', async () => {
    const p = await project({ manifest: { volumes: ['builtin/stable-diffusion-v1-5'] }, run: 'cat /volumes/builtin/stable-diffusion-v1-5/model.txt\n' });
    const missing = await cycle(['project', 'test'], { cwd: p.root });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('volume "builtin/stable-diffusion-v1-5" has no local folder');
    expect(missing.stderr).toContain('.cycle/volumes/builtin/stable-diffusion-v1-5');
    await writeFiles(p.root, { '.cycle/volumes/builtin/stable-diffusion-v1-5/model.txt': 'weights\n' });
    const ok = await cycle(['project', 'test'], { cwd: p.root });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('weights');
    const data = await tempDir();
    await writeFiles(data, { 'model.txt': 'other weights\n' });
    const given = await cycle(['project', 'test', '--volume', `builtin/stable-diffusion-v1-5=${data}`], { cwd: p.root });
    await fs.rm(data, { recursive: true, force: true });
    expect(given.code, given.stderr).toBe(0);
    expect(given.stdout).toContain('other weights');
  });

  it.each([
    ['FIFO', ['a.txt', 'ckpt/e1.bin', 'ckpt/e2.bin']],
    ['LIFO', ['a.txt', 'ckpt/e2.bin', 'ckpt/e1.bin']],
  ])('captures /artifacts while the job runs, listed in %s order; --resume puts them back', async (order, expected) => {
    const p = await project({
      manifest: { order },
      // The scenario (the pauses are the job's: a file is taken once unchanged for 500 ms).
      run: 'echo first > /artifacts/a.txt; sleep 1; mkdir -p $CYCLE_ARTIFACTS_DIR/ckpt; echo e1 > /artifacts/ckpt/e1.bin; sleep 1; echo e2 > /artifacts/ckpt/e2.bin; sleep 1; echo "second version" > /artifacts/a.txt; rm /artifacts/ckpt/e1.bin\n',
    });
    const result = await cycle(['project', 'test', '--json'], { cwd: p.root });
    expect(result.code, result.stderr).toBe(0);
    const events = result.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const done = events.find((e) => e.event === 'done');
    expect(done.artifactOrder).toBe(order);
    expect(done.artifacts.map((a: { path: string }) => a.path)).toEqual(expected);
    // Captured while it ran: e1.bin before it was deleted, a.txt once before its rewrite.
    expect(events.filter((e) => e.event === 'artifact').map((e) => e.path)).toEqual(['a.txt', 'ckpt/e1.bin', 'ckpt/e2.bin', 'a.txt']);
    const artifacts = path.join(p.root, done.runDir, 'artifacts');
    expect(await fs.readFile(path.join(artifacts, 'a.txt'), 'utf8')).toBe('second version\n');
    expect(await fs.readFile(path.join(artifacts, 'ckpt/e1.bin'), 'utf8')).toBe('e1\n');
    expect(result.stderr).toContain(`3 artifacts (${order})`);

    await writeFiles(p.root, { '.cycleswap/run.sh': 'cat /artifacts/a.txt /artifacts/ckpt/e1.bin\n' });
    const resumed = await cycle(['project', 'test', '--resume'], { cwd: p.root });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toBe('second version\ne1\n');
    expect(resumed.stderr).toContain(`resuming from run ${path.basename(done.runDir)}`);
  });

  it('a failing run.sh exits 6 and shows its own exit code', async () => {
    const p = await project({ run: 'echo "training..."\nexit 3\n' });
    const result = await cycle(['project', 'test'], { cwd: p.root });
    expect(result.code).toBe(6);
    expect(result.stdout).toContain('training...');
    expect(result.stderr).toContain('error: run.sh failed: exited with code 3');
  });

  it("works with BuildKit too (Debian's docker 20.10 client with DOCKER_BUILDKIT=1)", async () => {
    const client = '/usr/bin/docker';
    const hasClient = await fs.access(client).then(
      () => true,
      () => false,
    );
    expect(hasClient, 'scripts/setup.sh installs docker.io, whose client speaks BuildKit').toBe(true);
    const p = await project({ manifest: { buildFiles: ['f.txt'] }, files: { 'f.txt': '1' }, build: 'echo "built with $(cat f.txt)"\n' });
    const env = { CYCLE_DOCKER_BIN: client, DOCKER_BUILDKIT: '1', CYCLE_DOCKER_NETWORK: 'host' };
    const first = await cycle(['project', 'test'], { cwd: p.root, env });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain('built with 1');
    expect(first.stderr).not.toMatch(/^#\d+ /m); // BuildKit's step lines are hidden
    const layers1 = await imageLayers((await lastBuild(p.root)).image.id);
    await fs.writeFile(path.join(p.root, 'f.txt'), '2');
    const second = await cycle(['project', 'test'], { cwd: p.root, env });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain('built with 2');
    const layers2 = await imageLayers((await lastBuild(p.root)).image.id);
    expect(layers2.slice(0, layers1.length)).toEqual(layers1);
  });
});

describe('project test: OCI projects', () => {
  async function ociProject(files: Record<string, string>): Promise<E2EProject> {
    const root = await tempDir('cycle-e2e-oci-');
    const name = testProjectName(`oci-${made.length}`);
    await writeFiles(root, files);
    const manifestPath = path.join(root, 'computalot.project.json');
    const manifest = JSON.parse(await fs.readFile(manifestPath, 'utf8'));
    manifest.name = name;
    await fs.writeFile(manifestPath, JSON.stringify(manifest));
    const p = { root, name };
    made.push(p);
    return p;
  }

  const job = `import json, os, pathlib, sys
payload = json.loads(pathlib.Path(os.environ["COMPUTALOT_TASK_PAYLOAD"]).read_text())
for step in range(1, payload.get("steps", 2) + 1):
    print("COMPUTALOT_PROGRESS:" + json.dumps({"step": step}), flush=True)
print("log line", flush=True)
pathlib.Path(os.environ["COMPUTALOT_ARTIFACT_DIR"], "summary.txt").write_text("done")
if payload.get("no_result"):
    sys.exit(0)
pathlib.Path(os.environ["COMPUTALOT_TASK_RESULT"]).write_text("not json" if payload.get("bad_result") else json.dumps({"sum": payload.get("steps", 2) * 10}))
`;
  /** `job` ran with `{"steps": 3}` to its end: its result, its log line, its last progress, its artifact. */
  function expectThreeSteps(result: CliResult): void {
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout.slice(result.stdout.indexOf('{')))).toEqual({ sum: 30 });
    expect(result.stdout).toContain('log line');
    expect(result.stderr).toContain('progress: {"step": 3}');
    expect(result.stderr).toContain('summary.txt');
  }
  const files = {
    Dockerfile: 'FROM ubuntu:24.04\nWORKDIR /workspace\nCOPY . .\n',
    '.dockerignore': 'ignored-by-docker.txt\n',
    'ignored-by-docker.txt': 'x',
    'job.py': job,
    'computalot.project.json': JSON.stringify({
      version: 1,
      runtime: { kind: 'oci', sandbox: 'gvisor', workdir: '/workspace' },
      entrypoint: { command: ['python3', 'job.py'] },
      validation: { executables: ['python3'], files: ['/workspace/job.py'], commands: [['python3', '-c', 'import json']] },
    }),
  };

  it('runs the entrypoint with the payload, prints the result, shows progress, collects artifacts', async () => {
    const p = await ociProject(files);
    const result = await cycle(['project', 'test', '--payload', '{"steps": 3}'], { cwd: p.root });
    expectThreeSteps(result);
    expect(result.stdout).not.toContain('COMPUTALOT_PROGRESS');
    expect(result.stderr).toContain('✓ executable python3');
    expect(result.stderr).toContain('✓ command python3 -c import json');

    const json = await cycle(['project', 'test', '--json', '--payload', '@payload.json'], { cwd: p.root, env: {} }).catch(() => undefined);
    expect(json?.code).toBe(2);
    expect(json?.stderr).toContain('--payload @payload.json: no such file');

    const piped = await cycle(['project', 'test', '--json', '--payload', '-'], { cwd: p.root, input: '{"steps": 2}' });
    expect(piped.code, piped.stderr).toBe(0);
    const events = piped.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(events.filter((e) => e.event === 'progress').map((e) => e.data)).toEqual([{ step: 1 }, { step: 2 }]);
    expect(events.at(-1)).toMatchObject({ event: 'done', status: 'succeeded', result: { sum: 20 } });
    expect(events.find((e) => e.event === 'image')).toMatchObject({ mode: 'reused' });
  });

  it('reports a missing or invalid result file clearly', async () => {
    const p = await ociProject(files);
    const none = await cycle(['project', 'test', '--payload', '{"no_result": true}'], { cwd: p.root });
    expect(none.code).toBe(6);
    expect(none.stderr).toContain('exited 0 but wrote no result');
    const bad = await cycle(['project', 'test', '--payload', '{"bad_result": true}'], { cwd: p.root });
    expect(bad.code).toBe(6);
    expect(bad.stderr).toContain('the result file is not valid JSON');
    const badPayload = await cycle(['project', 'test', '--payload', '{"steps": 3,}'], { cwd: p.root });
    expect(badPayload.code).toBe(2);
    expect(badPayload.stderr).toMatch(/--payload is not valid JSON: .* at line 1, column 1[23]/);
  });

  it('a failing validation check names the check and exits 3', async () => {
    const p = await ociProject({
      ...files,
      'computalot.project.json': JSON.stringify({
        version: 1,
        runtime: { kind: 'oci', workdir: '/workspace' },
        entrypoint: { command: ['python3', 'job.py'] },
        validation: {
          executables: ['python3', 'ffmpeg'],
          files: ['/workspace/weights.bin'],
          commands: [{ label: 'torch imports', command: ['python3', '-c', 'import torch'] }],
        },
      }),
    });
    const result = await cycle(['project', 'test'], { cwd: p.root });
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('3 of 4 validation checks failed');
    expect(result.stderr).toContain('executable ffmpeg: not found on PATH');
    expect(result.stderr).toContain('file /workspace/weights.bin: does not exist');
    expect(result.stderr).toMatch(/command torch imports: exited with code 1: .*No module named 'torch'/);
  });

  describe('runtime.services', () => {
    const withServices = (services: unknown[], dockerfile = files.Dockerfile) => ({
      ...files,
      Dockerfile: dockerfile,
      'computalot.project.json': JSON.stringify({
        version: 1,
        runtime: { kind: 'oci', sandbox: 'gvisor', workdir: '/workspace', services },
        entrypoint: { command: ['python3', 'job.py'] },
      }),
    });

    it('the runner protocol is unchanged behind the services: progress, log, result, artifacts; their output goes to stderr, prefixed', async () => {
      const p = await ociProject(
        withServices([
          { name: 'sidecar', command: ['sh', '-c', 'echo "sidecar up"; exec sleep 300'] },
          {
            name: 'checked',
            command: ['sh', '-c', 'echo "checked up"; : > /tmp/checked-ready; exec sleep 300'],
            healthcheck: { command: ['test', '-f', '/tmp/checked-ready'] },
          },
        ]),
      );
      const result = await cycle(['project', 'test', '--payload', '{"steps": 3}'], { cwd: p.root });
      expectThreeSteps(result);
      expect(result.stdout).not.toContain('[service');
      expect(result.stderr).toContain('[service sidecar] sidecar up\n');
      expect(result.stderr).toContain('[service sidecar] running (no healthcheck)\n');
      expect(result.stderr).toContain('[service checked] healthy\n');
    });

    it('a service that never gets healthy fails the task with its name and last output; the entrypoint does not run', async () => {
      const p = await ociProject(
        withServices([
          {
            name: 'embedder',
            command: ['sh', '-c', 'echo "loading weights"; exec sleep 300'],
            ready_timeout_s: 2,
            healthcheck: { command: ['python3', '-c', 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:9/", timeout=1)'] },
          },
        ]),
      );
      const result = await cycle(['project', 'test', '--json'], { cwd: p.root });
      expect(result.code, result.stderr).toBe(6);
      expect(result.stderr).toContain(
        'the job failed: service "embedder" was not healthy within 2s (runtime.services[0]; fix the service or its healthcheck, or raise its ready_timeout_s); last output: loading weights | not healthy within 2s: the last healthcheck exited with code 1 |',
      );
      expect(result.stderr).toMatch(/ConnectionRefusedError|Connection refused/);
      expect(result.stderr).not.toContain('COMPUTALOT_SERVICE_FAILED');
      const done = JSON.parse(result.stdout.trim().split('\n').at(-1)!);
      expect(done).toMatchObject({ event: 'done', status: 'failed', artifacts: [] });
      // The entrypoint never ran: it prints "log line" and writes an artifact.
      expect(result.stderr).not.toContain('log line');
    });

    it('an image without /bin/sh fails naming runtime.services and the fix', async () => {
      const p = await ociProject(withServices([{ name: 'sidecar', command: ['python3', '-m', 'http.server'] }], `${files.Dockerfile}RUN rm /usr/bin/sh\n`));
      const result = await cycle(['project', 'test'], { cwd: p.root });
      expect(result.code, result.stderr).toBe(6);
      expect(result.stderr).toContain('the job failed: runtime.services needs /bin/sh in the image');
      expect(result.stderr).toContain('fix: build from an image with a POSIX shell');
    });
  });

  it('honours .dockerignore', async () => {
    const p = await ociProject({
      ...files,
      'job.py': 'import os, json\nopen(os.environ["COMPUTALOT_TASK_RESULT"], "w").write(json.dumps(sorted(os.listdir("."))))\n',
    });
    const result = await cycle(['project', 'test'], { cwd: p.root });
    expect(result.code, result.stderr).toBe(0);
    const listing = JSON.parse(result.stdout) as string[];
    expect(listing).toContain('job.py');
    expect(listing).not.toContain('ignored-by-docker.txt');
    expect(listing).not.toContain('.cycle');
  });
});

describe('project test: the documented example manifests run', () => {
  const examples = path.join(import.meta.dirname, '..', 'fixtures', 'manifests');
  const roots: string[] = [];
  // The images go with the file's afterAll (by project key, a hash of the path); the folders here.
  afterAll(async () => {
    await Promise.all(roots.map((root) => fs.rm(root, { recursive: true, force: true })));
  });
  it.each(['docs-minimal', 'docs-build', 'docs-validation', 'docs-runtime-init', 'docs-runtime-services', 'docs-all-sections'])('%s', async (example) => {
    const root = await tempDir('cycle-e2e-docs-');
    await fs.cp(path.join(examples, example), root, { recursive: true });
    const manifestPath = path.join(root, 'computalot.project.json');
    const name = testProjectName(example);
    await fs.writeFile(manifestPath, JSON.stringify({ ...JSON.parse(await fs.readFile(manifestPath, 'utf8')), name }));
    made.push({ root, name });
    roots.push(root);
    const result = await cycle(['project', 'test', '--payload', '{"n": 1}'], { cwd: root });
    expect(result.code, result.stderr).toBe(0);
    const built = JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as { echo: unknown; build_args: string | null };
    expect(built.echo).toEqual({ n: 1 });
    // The service was healthy before the entrypoint ran, and answered it over loopback.
    if (example === 'docs-runtime-services') {
      expect(built).toMatchObject({ service: 'hello from the embedder' });
      expect(result.stderr).toContain('[service embedder] healthy');
    }
    // build.target and build.args reach docker build: the stage after the target would fail.
    expect(built.build_args).toBe(example === 'docs-build' || example === 'docs-all-sections' ? 'python 3.11' : null);
    if (example === 'docs-validation' || example === 'docs-all-sections') expect(result.stderr).toContain('✓ command json import');
    if (example === 'docs-runtime-init' || example === 'docs-all-sections') {
      // runtime.init's `uv sync` (a stand-in in the fixture's Dockerfile) ran in the workdir, with its env, before the task.
      expect(result.stderr).toContain('running init "sync deps"');
      expect((built as { init?: string }).init).toMatch(/^synced in \/workspace with UV_LINK_MODE=copy, run [0-9a-f-]{36}$/);
    }
  });
});

describe('project test: runtime.init on real Docker', () => {
  const roots: string[] = [];
  afterAll(async () => {
    await Promise.all(roots.map((root) => fs.rm(root, { recursive: true, force: true })));
  });
  async function copyProject(files: Record<string, string> | string): Promise<string> {
    const root = await tempDir('cycle-e2e-init-');
    if (typeof files === 'string') await fs.cp(files, root, { recursive: true });
    else await writeFiles(root, files);
    const manifestPath = path.join(root, 'computalot.project.json');
    const name = `e2e-init-${Date.now().toString(36)}-${made.length}`;
    await fs.writeFile(manifestPath, JSON.stringify({ ...JSON.parse(await fs.readFile(manifestPath, 'utf8')), name }));
    made.push({ root, name });
    roots.push(root);
    return root;
  }
  const resultOf = (stdout: string): Record<string, unknown> => JSON.parse(stdout.slice(stdout.indexOf('{'))) as Record<string, unknown>;

  it("docs-runtime-init: init runs once, before the task, and its files are in the task's image; an unchanged second run does not run it again", async () => {
    const root = await copyProject(path.join(import.meta.dirname, '..', 'fixtures', 'manifests', 'docs-runtime-init'));
    const first = await cycle(['project', 'test'], { cwd: root });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain('running init "sync deps"');
    expect(first.stderr).toContain('uv stand-in: synced'); // its output, shown like build output
    const synced = resultOf(first.stdout).init;
    expect(synced).toMatch(/^synced in \/workspace with UV_LINK_MODE=copy, run [0-9a-f-]{36}$/);
    const image = (await lastBuild(root)).image.id;

    const second = await cycle(['project', 'test'], { cwd: root });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).not.toContain('running init');
    expect((await lastBuild(root)).image.id).toBe(image);
    // The same run id: the file init wrote the first time, not a second run's.
    expect(resultOf(second.stdout).init).toBe(synced);
  });

  it("with BuildKit too (Debian's docker 20.10 client with DOCKER_BUILDKIT=1): FROM the built image's tag, a failure's exit code", async () => {
    const env = { CYCLE_DOCKER_BIN: '/usr/bin/docker', DOCKER_BUILDKIT: '1', CYCLE_DOCKER_NETWORK: 'host' };
    const root = await copyProject(path.join(import.meta.dirname, '..', 'fixtures', 'manifests', 'docs-runtime-init'));
    const result = await cycle(['project', 'test'], { cwd: root, env });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain('running init "sync deps"');
    expect(result.stderr).not.toMatch(/^#\d+ /m);
    expect(resultOf(result.stdout).init).toMatch(/^synced in \/workspace with UV_LINK_MODE=copy, run [0-9a-f-]{36}$/);

    const manifestPath = path.join(root, 'computalot.project.json');
    const manifest = JSON.parse(await fs.readFile(manifestPath, 'utf8'));
    manifest.runtime.init.commands[0].command = ['sh', '-c', 'echo "about to fail"; exit 7'];
    await fs.writeFile(manifestPath, JSON.stringify(manifest));
    const failed = await cycle(['project', 'test'], { cwd: root, env });
    expect(failed.code).toBe(6);
    expect(failed.stderr).toContain('runtime.init.commands[0] "sync deps" exited with code 7');
    expect(failed.stderr).toContain('about to fail');
  });

  it("cwd (with a space) and env reach the command, the image's own env is put back, and the prepared image's config is the built one's", async () => {
    const root = await copyProject({
      Dockerfile: 'FROM ubuntu:24.04\nENV MODE=image\nWORKDIR /workspace\nCMD ["python3", "-V"]\nCOPY . .\n',
      'job.py':
        'import json, os\njson.dump({"saw": open("/tmp/init-saw").read(), "mode": os.environ["MODE"], "extra": os.environ.get("EXTRA")}, open(os.environ["COMPUTALOT_TASK_RESULT"], "w"))\n',
      'computalot.project.json': JSON.stringify({
        version: 1,
        runtime: {
          kind: 'oci',
          workdir: '/workspace',
          init: {
            commands: [
              { label: 'make a folder', command: ['mkdir', '-p', 'sub dir'] },
              {
                label: 'record',
                command: ['sh', '-c', 'echo "$MODE|$EXTRA|$(pwd)" > /tmp/init-saw'],
                cwd: 'sub dir',
                env: { MODE: 'init', EXTRA: 'a $b "c" \\d' },
              },
            ],
          },
        },
        entrypoint: { command: ['python3', 'job.py'] },
      }),
    });
    const result = await cycle(['project', 'test'], { cwd: root });
    expect(result.code, result.stderr).toBe(0);
    expect(resultOf(result.stdout)).toEqual({ saw: 'init|a $b "c" \\d|/workspace/sub dir\n', mode: 'image', extra: null });
    // The reference: the same Dockerfile built without init (Docker's cache makes it cheap).
    const pick = async (ref: string): Promise<unknown> => {
      const config = JSON.parse(await docker(['image', 'inspect', '--format', '{{json .Config}}', ref])) as Record<string, unknown>;
      return { Env: config.Env, WorkingDir: config.WorkingDir, Entrypoint: config.Entrypoint, Cmd: config.Cmd, User: config.User };
    };
    const reference = `cycle-e2e-init-reference:${Date.now().toString(36)}`;
    await docker(['build', '-q', '-t', reference, root]);
    try {
      const built = await pick(reference);
      expect(built).toMatchObject({ Env: expect.arrayContaining(['MODE=image']), WorkingDir: '/workspace', Cmd: ['python3', '-V'] });
      expect(await pick((await lastBuild(root)).image.id)).toEqual(built);
    } finally {
      await docker(['rmi', reference]).catch(() => undefined);
    }
  });

  it('a failing init command exits 6 naming its index and label, with its last output and the fix; one not in the image too', async () => {
    const files = (command: string[]): Record<string, string> => ({
      Dockerfile: 'FROM ubuntu:24.04\nWORKDIR /workspace\nCOPY . .\n',
      'job.py': 'raise SystemExit("the task must not run")\n',
      'computalot.project.json': JSON.stringify({
        version: 1,
        runtime: { kind: 'oci', workdir: '/workspace', init: { commands: [{ label: 'seed data', command }] } },
        entrypoint: { command: ['python3', 'job.py'] },
      }),
    });
    const root = await copyProject(files(['sh', '-c', 'echo "about to fail"; exit 7']));
    const failed = await cycle(['project', 'test'], { cwd: root });
    expect(failed.code).toBe(6);
    expect(failed.stderr).toContain('runtime.init.commands[0] "seed data" exited with code 7');
    expect(failed.stderr).toContain('about to fail');
    expect(failed.stderr).toContain('runtime.init.commands[0] of computalot.project.json');
    expect(failed.stderr).not.toContain('the task must not run');
    expect(failed.stderr).not.toMatch(/^\s+at /m);

    const missing = await copyProject(files(['no-such-tool', 'sync']));
    const notFound = await cycle(['project', 'test'], { cwd: missing });
    expect(notFound.code).toBe(6);
    expect(notFound.stderr).toMatch(/runtime\.init\.commands\[0\] "seed data" could not run: .*"no-such-tool": executable file not found/);
    expect(notFound.stderr).toContain('install the program in the Dockerfile');
    expect(notFound.stderr).not.toMatch(/^\s+at /m);
  });
});

describe('project test: Ctrl-C', () => {
  async function interrupt(
    p: E2EProject,
    waitText: string,
    env: Record<string, string> = {},
  ): Promise<{ code: number; stdout: string; stderr: string; tmp: string }> {
    const tmp = await tempDir('cycle-e2e-tmp-');
    const run = startCycle(['project', 'test'], { cwd: p.root, env: { ...env, TMPDIR: tmp } });
    await waitFor(() => run.output().stdout.includes(waitText) || run.output().stderr.includes(waitText), 60_000, waitText);
    run.child.kill('SIGINT');
    const code = await run.exited;
    return { code, stdout: run.output().stdout, stderr: run.output().stderr, tmp };
  }

  it.each([
    ['the Engine API', {}],
    ['the docker CLI', { CYCLE_DOCKER_API: '0' }],
  ])('during the run, through %s: stops and removes the container and temp folders, exits 130', async (_transport, env) => {
    const p = await project({ run: 'echo started; sleep 60\n' });
    const { code, stderr, tmp } = await interrupt(p, 'started', env);
    expect(code).toBe(130);
    expect(stderr).toContain('interrupting');
    const left = await docker(['ps', '-a', '--filter', `label=cycle.project-key=${localProjectKey(p.root)}`, '--format', '{{.Names}}']);
    expect(left).toBe('');
    expect(await fs.readdir(tmp)).toEqual([]);
  });

  it('during the build: stops the build, leaves no container, exits 130', async () => {
    // The step prints its hostname: on the legacy builder it runs in a container whose hostname is
    // the container's short id (BuildKit runs steps outside Docker's containers).
    const p = await project({ build: 'echo "building-now in $(hostname)"; sleep 60\n' });
    const { code, tmp, stdout, stderr } = await interrupt(p, 'building-now');
    expect(code).toBe(130);
    const step = /building-now in (\S+)/.exec(stdout + stderr)?.[1];
    expect(step, stdout + stderr).toBeDefined();
    const buildContainer = step && /^[0-9a-f]{12}$/.test(step) ? step : undefined;
    // Only this test's containers: others share the daemon. Its build step's, and any cycle labels with its project.
    const ours = async (): Promise<string> =>
      [
        await docker(['ps', '-aq', '--filter', `label=cycle.project-key=${localProjectKey(p.root)}`]),
        buildContainer ? await docker(['ps', '-aq', '--filter', `id=${buildContainer}`]) : '',
      ].join('');
    await waitFor(async () => (await ours()) === '', 20_000, 'the build container to go');
    expect(await fs.readdir(tmp)).toEqual([]);
    await expect(fs.access(path.join(p.root, '.cycle', 'last-build.json'))).rejects.toThrow();
  });
});

describe('project test: Docker missing or down', () => {
  it('exit 5 with the fix', async () => {
    const p = await project();
    const missing = await cycle(['project', 'test'], { cwd: p.root, env: { CYCLE_DOCKER_BIN: '/nonexistent/docker' } });
    expect(missing.code).toBe(5);
    expect(missing.stderr).toContain('Docker is not installed');
    expect(missing.stderr).toContain('hint: install Docker');
    const down = await cycle(['project', 'test'], { cwd: p.root, env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock' } });
    expect(down.code).toBe(5);
    expect(down.stderr).toContain('the Docker daemon is not running or cannot be reached');
    expect(down.stderr).toContain('hint: start the Docker daemon');
    // A socket file that is left over with no daemon behind it: the Engine API path says the same.
    const stale = path.join(await tempDir('cycle-e2e-sock-'), 'docker.sock');
    const listener = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => console.log('up'))`]);
    await new Promise((resolve) => listener.stdout.once('data', resolve));
    listener.kill('SIGKILL');
    await new Promise((resolve) => listener.once('exit', resolve));
    const refused = await cycle(['project', 'test'], { cwd: p.root, env: { DOCKER_HOST: `unix://${stale}` } });
    expect(refused.code, refused.stderr).toBe(5);
    expect(refused.stderr).toContain('the Docker daemon is not running or cannot be reached');
    expect(refused.stderr).toContain(stale);
  });
});
