import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import type {
  BuildRequest,
  ContainerExit,
  ContainerIO,
  ContainerSpec,
  DockerDriver,
  DockerInfo,
  ImageDetails,
  ImageSummary,
  PreparedContainer,
} from '../../src/docker/driver.js';
import { DockerBuildError, toDockerError } from '../../src/docker/errors.js';

interface HeldContainer {
  spec: ContainerSpec;
  io: ContainerIO;
  end: (exitCode: number) => void;
}

interface FakeImage extends ImageDetails {
  tags: string[];
  /** The image config's User (`USER`); not part of ImageDetails. */
  user: string;
}

/** One RUN step of a fake build: what it runs, where, with what env and as whom. */
export interface BuildRun {
  command: string[];
  workdir: string;
  env: Record<string, string>;
  user: string;
}

function envOf(env: string[]): Map<string, string> {
  return new Map(env.map((v) => [v.slice(0, v.indexOf('=')), v.slice(v.indexOf('=') + 1)]));
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
  /** What a RUN step of a build does: returns its exit code; may print lines of output. */
  onBuildRun: (step: BuildRun, output: (line: string) => void) => Promise<number> | number = () => 0;
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
  /**
   * With `prepares` on, the fake has prepareContainer: a container made ahead (listed by
   * `preparedNames` until it runs or is removed), run by runContainer when its run() comes.
   */
  prepares = false;
  private readonly preparedContainers = new Map<string, { startAhead: boolean }>();

  /** Containers prepared and not yet run nor removed, with whether each was started ahead. */
  preparedNames(): Array<{ name: string; startAhead: boolean }> {
    return [...this.preparedContainers.entries()].map(([name, { startAhead }]) => ({ name, startAhead }));
  }

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
      user: '',
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
    // The config is inherited from FROM and changed by the directives, as Docker does.
    const config = { env: [...parent.env], workdir: parent.workdir, entrypoint: parent.entrypoint, cmd: parent.cmd, user: parent.user };
    const labels: Record<string, string> = { ...parent.labels, ...request.labels };
    const args = new Map<string, string>();
    const substitute = (text: string): string =>
      text.replace(/^"(.*)"$/, '$1').replace(/\$\{(\w+)\}/g, (_, name: string) => envOf(config.env).get(name) ?? args.get(name) ?? '');
    const tail: string[] = [];
    for (const line of dockerfile.split('\n')) {
      const [, directive, rest = ''] = /^(\w+)\s*(.*)$/.exec(line) ?? [];
      if (directive === 'ARG') args.set(rest, request.buildArgs?.[rest] ?? '');
      else if (directive === 'ENV') {
        const [key, value] = [rest.slice(0, rest.indexOf('=')), substitute(rest.slice(rest.indexOf('=') + 1))];
        const at = config.env.findIndex((v) => v.startsWith(`${key}=`));
        if (at === -1) config.env.push(`${key}=${value}`);
        else config.env[at] = `${key}=${value}`;
      } else if (directive === 'WORKDIR') config.workdir = path.posix.resolve(config.workdir || '/', substitute(rest));
      else if (directive === 'USER') config.user = rest;
      else if (directive === 'ENTRYPOINT') config.entrypoint = JSON.parse(rest) as string[];
      else if (directive === 'CMD') config.cmd = JSON.parse(rest) as string[];
      else if (directive === 'LABEL') for (const match of rest.matchAll(/"([^"]+)"="([^"]*)"/g)) labels[match[1]!] = match[2]!;
      else if (directive === 'RUN') {
        const command = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : ['/bin/sh', '-c', rest];
        // An ARG is in a RUN's environment unless the image's env sets the name (ENV wins).
        const env = Object.fromEntries([...args, ...envOf(config.env)]);
        const output = (text: string): void => {
          tail.push(text);
          request.onOutput?.(text);
        };
        const exitCode = await this.onBuildRun({ command, workdir: config.workdir, env, user: config.user }, output);
        if (exitCode !== 0) {
          output(`The command '${command.join(' ')}' returned a non-zero code: ${exitCode}`);
          throw new DockerBuildError(`docker build failed (exit 1)`, exitCode, tail);
        }
      }
    }
    const image = this.addImage({ tags: request.tags, layers: [...parent.layers, `layer-${this.counter}a`, `layer-${this.counter}b`], labels });
    Object.assign(image, config);
    for (const other of this.images.values()) if (other !== image) other.tags = other.tags.filter((t) => !request.tags.includes(t));
    return { imageId: image.id };
  }

  async inspectImage(ref: string): Promise<ImageDetails | undefined> {
    this.calls.push({ method: 'inspectImage', args: ref });
    const image = this.resolve(ref);
    if (!image) return undefined;
    const { tags, user, ...details } = image;
    return { ...details, env: [...details.env], labels: { ...details.labels }, repoTags: [...tags] };
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
    io.onStage?.('created');
    io.onStage?.('started');
    if (!this.hold) {
      const exit = await this.onRun(spec, io);
      io.onStage?.('exited');
      return typeof exit === 'number' ? { exitCode: exit } : exit;
    }
    const exitCode = await new Promise<number>((end) => {
      this.held.set(spec.name, { spec, io, end });
      for (const listener of this.startListeners) listener();
    });
    this.held.delete(spec.name);
    io.onStage?.('exited');
    return { exitCode };
  }

  get prepareContainer():
    | ((spec: ContainerSpec, io: ContainerIO, signal?: AbortSignal, options?: { startAhead?: boolean }) => Promise<PreparedContainer | ContainerExit>)
    | undefined {
    if (!this.prepares) return undefined;
    return async (spec, io, _signal, options = {}) => {
      this.calls.push({ method: 'prepareContainer', args: { name: spec.name, startAhead: options.startAhead === true } });
      this.preparedContainers.set(spec.name, { startAhead: options.startAhead === true });
      io.onStage?.('created');
      return {
        run: () => {
          if (!this.preparedContainers.delete(spec.name)) return Promise.resolve({ exitCode: 137 }); // removed meanwhile
          return this.runContainer(spec, io);
        },
        discard: () => this.removeContainer(spec.name),
      };
    };
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
    this.preparedContainers.delete(name);
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
