import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type { BuildRequest, ContainerExit, ContainerIO, ContainerSpec, DockerDriver, DockerInfo, ImageDetails, ImageSummary } from '../../src/docker/driver.js';
import { DockerBuildError, toDockerError } from '../../src/docker/errors.js';

interface HeldContainer {
  spec: ContainerSpec;
  io: ContainerIO;
  end: (exitCode: number) => void;
}

interface FakeImage extends ImageDetails {
  tags: string[];
}

/**
 * Docker in memory: images with layers and labels, builds that stack two layers on their FROM
 * image, containers that "run" a scripted handler. Records every call for assertions. Fails as
 * the real drivers do, with the same typed failures (DockerError kinds).
 */
export class FakeDocker implements DockerDriver {
  readonly calls: Array<{ method: string; args: unknown }> = [];
  /** Every container run, in order (the runContainer calls, typed). */
  readonly containersRun: ContainerSpec[] = [];
  readonly images = new Map<string, FakeImage>();
  info_: Partial<DockerInfo> = {};
  /** What a container does: returns its exit code (or how it exited: OOM kills); may write output through io. */
  onRun: (spec: ContainerSpec, io: ContainerIO) => Promise<number | ContainerExit> | number | ContainerExit = () => 0;
  private counter = 0;
  /**
   * With `hold` on, each container runs until the test ends it (`exit`) or Docker removes it
   * (cancel, timeout: exit 137), so a test decides when and how every task ends.
   */
  hold = false;
  private readonly held = new Map<string, HeldContainer>();
  private readonly startListeners = new Set<() => void>();

  constructor() {
    for (const ref of ['ubuntu:22.04', 'ubuntu:24.04', 'ubuntu:26.04']) this.addImage({ tags: [ref], layers: [`base-${ref}`], labels: {} });
  }

  addImage(init: { tags: string[]; layers: string[]; labels: Record<string, string> }): FakeImage {
    const id = `sha256:${createHash('sha256')
      .update(String(this.counter++))
      .digest('hex')}`;
    const image: FakeImage = {
      id,
      parent: '',
      layers: init.layers,
      labels: init.labels,
      env: ['PATH=/usr/bin'],
      workdir: '/app',
      entrypoint: null,
      cmd: null,
      created: new Date(1_700_000_000_000 + this.counter * 1000).toISOString(),
      repoTags: init.tags,
      tags: init.tags,
    };
    this.images.set(id, image);
    return image;
  }

  resolve(ref: string): FakeImage | undefined {
    return this.images.get(ref) ?? [...this.images.values()].find((i) => i.tags.includes(ref));
  }

  async info(): Promise<DockerInfo> {
    this.calls.push({ method: 'info', args: {} });
    return {
      serverVersion: '27.0',
      clientVersion: '27.0',
      builder: 'legacy',
      runtimes: ['runc'],
      cdiSpecDirs: [],
      operatingSystem: 'fake',
      architecture: 'x86_64',
      transport: 'a fake Docker',
      ...this.info_,
    };
  }

  async build(request: BuildRequest): Promise<{ imageId: string }> {
    let dockerfile = '';
    if (request.context.kind === 'tar') dockerfile = await readDockerfile(request.context.open());
    this.calls.push({ method: 'build', args: { ...request, dockerfile } });
    const from = /^FROM (\S+)/m.exec(dockerfile)?.[1] ?? 'ubuntu:24.04';
    const parent = this.resolve(from);
    if (!parent) throw new DockerBuildError('docker build failed (exit 1)', undefined, [`ERROR: pull access denied for ${from}, repository does not exist`]);
    const labelLine = /^LABEL (.*)$/m.exec(dockerfile)?.[1] ?? '';
    const labels: Record<string, string> = { ...request.labels };
    for (const match of labelLine.matchAll(/"([^"]+)"="([^"]*)"/g)) labels[match[1]!] = match[2]!;
    const image = this.addImage({ tags: request.tags, layers: [...parent.layers, `layer-${this.counter}a`, `layer-${this.counter}b`], labels });
    for (const other of this.images.values()) if (other !== image) other.tags = other.tags.filter((t) => !request.tags.includes(t));
    return { imageId: image.id };
  }

  async inspectImage(ref: string): Promise<ImageDetails | undefined> {
    this.calls.push({ method: 'inspectImage', args: ref });
    const image = this.resolve(ref);
    return image ? { ...image, repoTags: [...image.tags] } : undefined;
  }

  async listImages(filter: { label?: string[] }): Promise<ImageSummary[]> {
    const wanted = (filter.label ?? []).map((l) => l.split('='));
    return [...this.images.values()]
      .filter((image) => wanted.every(([k, v]) => image.labels[k!] === v))
      .map((image) => ({
        id: image.id,
        repository: image.tags[0]?.split(':')[0] ?? '<none>',
        tag: image.tags[0]?.split(':')[1] ?? '<none>',
        createdAt: image.created,
      }));
  }

  async tagImage(source: string, target: string): Promise<void> {
    this.calls.push({ method: 'tagImage', args: { source, target } });
    const image = this.resolve(source);
    if (!image) throw toDockerError(`tag ${source} as ${target}`, { kind: 'image-missing', daemonMessage: `No such image: ${source}` });
    for (const other of this.images.values()) other.tags = other.tags.filter((t) => t !== target);
    image.tags.push(target);
  }

  async removeImage(ref: string): Promise<void> {
    this.calls.push({ method: 'removeImage', args: ref });
    const image = this.resolve(ref);
    if (!image) return;
    if (image.tags.includes(ref) && image.tags.length > 1) image.tags = image.tags.filter((t) => t !== ref);
    else this.images.delete(image.id);
  }

  async flattenImage(ref: string, tag: string, changes: string[]): Promise<string> {
    this.calls.push({ method: 'flattenImage', args: { ref, tag, changes } });
    const image = this.resolve(ref)!;
    return this.addImage({ tags: [tag], layers: ['flat'], labels: { ...image.labels } }).id;
  }

  async runContainer(spec: ContainerSpec, io: ContainerIO): Promise<ContainerExit> {
    this.calls.push({ method: 'runContainer', args: spec });
    this.containersRun.push(spec);
    if (io.stdin) for await (const chunk of io.stdin) void chunk; // consume the source tar
    if (!this.resolve(spec.image))
      return { exitCode: 125, dockerFailure: { kind: 'image-missing', daemonMessage: `docker: Error response from daemon: No such image: ${spec.image}` } };
    if (!this.hold) {
      const exit = await this.onRun(spec, io);
      return typeof exit === 'number' ? { exitCode: exit } : exit;
    }
    const exitCode = await new Promise<number>((end) => {
      this.held.set(spec.name, { spec, io, end });
      for (const listener of this.startListeners) listener();
    });
    this.held.delete(spec.name);
    return { exitCode };
  }

  /** Held containers running now. */
  runningNames(): string[] {
    return [...this.held.keys()];
  }

  /** Resolves once `count` held containers run at the same time (no polling, no sleeps). */
  async whenRunning(count: number): Promise<ContainerSpec[]> {
    if (this.held.size < count) {
      await new Promise<void>((resolve) => {
        const listener = (): void => {
          if (this.held.size < count) return;
          this.startListeners.delete(listener);
          resolve();
        };
        this.startListeners.add(listener);
      });
    }
    return [...this.held.values()].map((c) => c.spec);
  }

  /** Ends a held container: writes `stdout` and a `result` (the runner protocol's file), then exits with `exitCode`. */
  exit(name: string, exitCode: number, stdout = '', result?: unknown): void {
    const container = this.held.get(name);
    if (!container) throw new Error(`no held container ${name} (running: ${this.runningNames().join(', ') || 'none'})`);
    if (stdout) container.io.stdout(Buffer.from(stdout));
    if (result !== undefined) {
      const file = container.spec.env?.COMPUTALOT_TASK_RESULT;
      const mount = container.spec.mounts?.find((m) => file?.startsWith(`${m.target}/`));
      if (!file || !mount) throw new Error(`container ${name} has no result file mounted`);
      writeFileSync(path.join(mount.source, path.posix.relative(mount.target, file)), JSON.stringify(result));
    }
    this.held.delete(name);
    container.end(exitCode);
  }

  async removeContainer(name: string): Promise<void> {
    this.calls.push({ method: 'removeContainer', args: name });
    const container = this.held.get(name);
    if (container) {
      this.held.delete(name);
      container.end(137);
    }
  }

  async listContainers(): Promise<Array<{ id: string; names: string; state: string; labels: string }>> {
    return [];
  }

  called(method: string): unknown[] {
    return this.calls.filter((c) => c.method === method).map((c) => c.args);
  }
}

async function readDockerfile(tar: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of tar) chunks.push(chunk as Buffer);
  const data = Buffer.concat(chunks);
  for (let offset = 0; offset + 512 <= data.length; ) {
    const name = data
      .subarray(offset, offset + 100)
      .toString('utf8')
      .replace(/\0.*$/s, '');
    const size = parseInt(
      data
        .subarray(offset + 124, offset + 136)
        .toString('ascii')
        .replace(/\0.*$/s, '')
        .trim() || '0',
      8,
    );
    if (name === 'Dockerfile') return data.subarray(offset + 512, offset + 512 + size).toString('utf8');
    if (name === '') break;
    offset += 512 + Math.ceil(size / 512) * 512;
  }
  return '';
}
