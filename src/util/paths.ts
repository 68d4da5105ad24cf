import path from 'node:path';

/**
 * Whether `candidate` lies under `root` (or is `root`, unless `allowRoot` is false). A name that
 * merely starts with ".." ("..data") is inside; only a real "../" step leads out.
 */
export function isInside(root: string, candidate: string, allowRoot = true): boolean {
  const relative = path.relative(root, candidate);
  if (relative === '') return allowRoot;
  return relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative);
}
