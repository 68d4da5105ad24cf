import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { resolveDockerEndpoint, type EndpointFs } from '../../src/docker/endpoint.js';

const contextId = (name: string): string => createHash('sha256').update(name).digest('hex');

function fakeFs(files: Record<string, string>, sockets: string[] = ['/var/run/docker.sock']): EndpointFs {
  return {
    readFile: (file) => files[file],
    isSocket: (file) => sockets.includes(file),
    exists: (file) => Object.keys(files).some((known) => known === file || known.startsWith(`${file}/`)),
  };
}

describe('which Docker endpoint cycle talks to directly', () => {
  const home = { HOME: '/home/me' };

  it('the default socket when nothing else is set, and the CLI when it is missing', () => {
    expect(resolveDockerEndpoint(home, fakeFs({}))).toMatchObject({ kind: 'unix', socketPath: '/var/run/docker.sock' });
    expect(resolveDockerEndpoint(home, fakeFs({}, []))).toBeUndefined();
  });

  it('DOCKER_HOST: unix and plain tcp directly; TLS, ssh and others through the CLI', () => {
    expect(resolveDockerEndpoint({ ...home, DOCKER_HOST: 'unix:///run/user/1000/docker.sock' }, fakeFs({}, ['/run/user/1000/docker.sock']))).toMatchObject({
      kind: 'unix',
      socketPath: '/run/user/1000/docker.sock',
    });
    expect(resolveDockerEndpoint({ ...home, DOCKER_HOST: 'tcp://10.0.0.5:2375' }, fakeFs({}))).toMatchObject({ kind: 'tcp', host: '10.0.0.5', port: 2375 });
    expect(resolveDockerEndpoint({ ...home, DOCKER_HOST: 'tcp://[::1]:2375' }, fakeFs({}))).toMatchObject({ kind: 'tcp', host: '::1', port: 2375 });
    expect(resolveDockerEndpoint({ ...home, DOCKER_HOST: 'tcp://10.0.0.5:2376', DOCKER_TLS_VERIFY: '1' }, fakeFs({}))).toBeUndefined();
    expect(resolveDockerEndpoint({ ...home, DOCKER_HOST: 'ssh://me@build-box' }, fakeFs({}))).toBeUndefined();
    expect(resolveDockerEndpoint({ ...home, DOCKER_HOST: 'unix:///nonexistent.sock' }, fakeFs({}))).toBeUndefined();
  });

  it('CYCLE_DOCKER_BIN or CYCLE_DOCKER_API=0: always the CLI', () => {
    expect(resolveDockerEndpoint({ ...home, CYCLE_DOCKER_BIN: '/usr/bin/podman' }, fakeFs({}))).toBeUndefined();
    expect(resolveDockerEndpoint({ ...home, CYCLE_DOCKER_API: '0' }, fakeFs({}))).toBeUndefined();
  });

  it('the current Docker context, from DOCKER_CONTEXT or config.json, as the CLI finds it', () => {
    const meta = (name: string, host: string): Record<string, string> => ({
      [`/home/me/.docker/contexts/meta/${contextId(name)}/meta.json`]: JSON.stringify({
        Name: name,
        Endpoints: { docker: { Host: host, SkipTLSVerify: false } },
      }),
    });
    const files = {
      '/home/me/.docker/config.json': JSON.stringify({ currentContext: 'desktop-linux' }),
      ...meta('desktop-linux', 'unix:///home/me/.docker/run/docker.sock'),
      ...meta('rootless', 'unix:///run/user/1000/docker.sock'),
      ...meta('remote', 'tcp://10.1.1.1:2376'),
      [`/home/me/.docker/contexts/tls/${contextId('remote')}/docker/ca.pem`]: 'cert',
    };
    const sockets = ['/home/me/.docker/run/docker.sock', '/run/user/1000/docker.sock', '/var/run/docker.sock'];
    expect(resolveDockerEndpoint(home, fakeFs(files, sockets))).toMatchObject({ socketPath: '/home/me/.docker/run/docker.sock' });
    expect(resolveDockerEndpoint({ ...home, DOCKER_CONTEXT: 'rootless' }, fakeFs(files, sockets))).toMatchObject({ socketPath: '/run/user/1000/docker.sock' });
    expect(resolveDockerEndpoint({ ...home, DOCKER_CONTEXT: 'default' }, fakeFs(files, sockets))).toMatchObject({ socketPath: '/var/run/docker.sock' });
    expect(resolveDockerEndpoint({ ...home, DOCKER_CONTEXT: 'remote' }, fakeFs(files, sockets))).toBeUndefined(); // TLS material
    expect(resolveDockerEndpoint({ ...home, DOCKER_CONTEXT: 'unknown' }, fakeFs(files, sockets))).toBeUndefined();
    expect(resolveDockerEndpoint({ HOME: '/elsewhere', DOCKER_CONFIG: '/home/me/.docker' }, fakeFs(files, sockets))).toMatchObject({
      socketPath: '/home/me/.docker/run/docker.sock',
    });
    expect(resolveDockerEndpoint(home, fakeFs({ '/home/me/.docker/config.json': '{not json' }, sockets))).toBeUndefined();
  });
});
