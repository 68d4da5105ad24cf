import { createHash } from 'node:crypto';

/** Labels on every image and container cycle makes. */
export const LABELS = {
  project: 'cycle.project',
  /** Who owns the image: `local:<hash of the project folder>` or `server:<name>`. */
  projectKey: 'cycle.project-key',
  buildHash: 'cycle.build-hash',
  base: 'cycle.base',
  run: 'cycle.run',
} as const;

/** A Docker repository name component from a project name (stricter than project names). */
export function repositoryComponent(name: string): string {
  const cleaned = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return cleaned === '' ? 'project' : cleaned;
}

export function localProjectKey(root: string): string {
  return `local:${createHash('sha256').update(root).digest('hex').slice(0, 16)}`;
}

export function shortHash(hash: string): string {
  return hash.slice(0, 12);
}
