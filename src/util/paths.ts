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

/**
 * `root` joined with parts that come from user input (names, ids, directive keys), refused when
 * the result would not lie strictly inside `root`. The message names the part, not the host path
 * (it can reach an HTTP answer).
 */
export function joinInside(root: string, ...parts: string[]): string {
  const joined = path.join(root, ...parts);
  if (!isInside(root, joined, false) || parts.some((part) => part.includes('\0'))) {
    throw new Error(`${JSON.stringify(parts.join('/'))} leads outside its folder: expected a plain name`);
  }
  return joined;
}
