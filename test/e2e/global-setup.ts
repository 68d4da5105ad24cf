import { execFileSync } from 'node:child_process';

/**
 * e2e tests need the real Docker daemon and the local base images (scripts/setup.sh makes
 * both). They are never skipped: without Docker the run fails here, saying what to do.
 */
export default function setup(): void {
  const fail = (message: string): never => {
    throw new Error(`e2e tests need Docker: ${message}\nRun \`bash scripts/setup.sh\` first (it installs and starts Docker and builds the base image).`);
  };
  try {
    execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { stdio: 'pipe' });
  } catch (error) {
    fail(
      `the daemon is not reachable (${
        String((error as { stderr?: Buffer }).stderr ?? error)
          .trim()
          .split('\n')[0]
      })`,
    );
  }
  for (const image of ['ubuntu:24.04', 'ubuntu:22.04']) {
    try {
      execFileSync('docker', ['image', 'inspect', image], { stdio: 'pipe' });
    } catch {
      fail(`the base image ${image} is missing`);
    }
  }
  execFileSync('node', ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.json'], { stdio: 'inherit' });
}
