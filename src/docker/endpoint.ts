import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Env } from '../ui/streams.js';

/** Where the Docker Engine API listens, when cycle can talk to it directly. */
export type DockerEndpoint = { kind: 'unix'; socketPath: string; description: string } | { kind: 'tcp'; host: string; port: number; description: string };

export interface EndpointFs {
  readFile(file: string): string | undefined;
  isSocket(file: string): boolean;
  exists(file: string): boolean;
}

const realFs: EndpointFs = {
  readFile: (file) => {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
  },
  isSocket: (file) => fs.statSync(file, { throwIfNoEntry: false })?.isSocket() ?? false,
  exists: (file) => fs.existsSync(file),
};

/**
 * The daemon the user's `docker` CLI talks to, when cycle can reach it the same way without
 * the CLI: DOCKER_HOST, else the current Docker context (DOCKER_CONTEXT or config.json), else
 * the default socket. Undefined means "use the docker CLI" (the always-correct path): a
 * chosen CLI binary (CYCLE_DOCKER_BIN), CYCLE_DOCKER_API=0, TLS, ssh://, npipe://, or anything
 * this does not understand. Talking to the socket saves a docker process per container
 * (~40-60 ms of a `project test` that reuses its image).
 */
export function resolveDockerEndpoint(env: Env, files: EndpointFs = realFs): DockerEndpoint | undefined {
  if (env.CYCLE_DOCKER_BIN || env.CYCLE_DOCKER_API === '0') return undefined;
  if (env.DOCKER_HOST) return env.DOCKER_TLS_VERIFY ? undefined : parseHost(env.DOCKER_HOST, 'DOCKER_HOST', files);
  const configDir = env.DOCKER_CONFIG || path.join(env.HOME || os.homedir(), '.docker');
  let context = env.DOCKER_CONTEXT;
  if (!context) {
    const config = files.readFile(path.join(configDir, 'config.json'));
    if (config !== undefined) {
      try {
        const current = (JSON.parse(config) as { currentContext?: unknown }).currentContext;
        if (typeof current === 'string') context = current;
      } catch {
        return undefined; // the CLI will say what is wrong with config.json
      }
    }
  }
  if (context && context !== 'default') {
    const id = createHash('sha256').update(context).digest('hex');
    if (files.exists(path.join(configDir, 'contexts', 'tls', id))) return undefined;
    const meta = files.readFile(path.join(configDir, 'contexts', 'meta', id, 'meta.json'));
    if (meta === undefined) return undefined;
    try {
      const host = (JSON.parse(meta) as { Endpoints?: { docker?: { Host?: unknown } } }).Endpoints?.docker?.Host;
      return typeof host === 'string' ? parseHost(host, `Docker context "${context}"`, files) : undefined;
    } catch {
      return undefined;
    }
  }
  return parseHost('unix:///var/run/docker.sock', 'the default socket', files);
}

function parseHost(host: string, from: string, files: EndpointFs): DockerEndpoint | undefined {
  if (host.startsWith('unix://')) {
    const socketPath = host.slice('unix://'.length);
    return files.isSocket(socketPath) ? { kind: 'unix', socketPath, description: `${host} (${from})` } : undefined;
  }
  const tcp = /^tcp:\/\/([^:/]+|\[[^\]]+\]):(\d+)\/?$/.exec(host);
  if (tcp) return { kind: 'tcp', host: tcp[1]!.replace(/^\[|\]$/g, ''), port: Number(tcp[2]), description: `${host} (${from})` };
  return undefined;
}
