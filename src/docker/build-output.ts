/**
 * What of `docker build` output a person wants to see: the build script's own lines.
 * Docker's step chatter (legacy and BuildKit) is hidden unless --debug; BuildKit's
 * "#7 0.532 " prefixes are removed.
 */
const CHATTER = [
  /^Step \d+\/\d+ : /,
  /^ ---> /,
  /^Removing intermediate container /,
  /^Successfully (built|tagged) /,
  /^Sending build context to Docker daemon/,
  /^DEPRECATED: The legacy builder is deprecated/,
  /^\s+(BuildKit is currently disabled|Install the buildx component|environment-variable\.|https:\/\/docs\.docker\.com\/go\/buildx\/)/,
  /^\s*$/,
  /^\[Warning\] IPv4 forwarding is disabled/,
  /^-{6}$/,
  /^ > /,
];

export function presentBuildLine(raw: string): string | undefined {
  // The legacy builder colours a step's stderr (ESC[91m … ESC[0m), the reset landing at the
  // start of its next line: without the codes, that line's chatter is recognised too.
  const line = raw.replace(/\x1b\[[0-9;]*m/g, '');
  // BuildKit: "#7 0.532 text" is output of a step; any other "#7 …" line is its bookkeeping.
  const buildkit = /^#\d+ \d+\.\d+ (.*)$/.exec(line);
  if (buildkit) return buildkit[1];
  if (/^#\d+ /.test(line)) return undefined;
  if (CHATTER.some((pattern) => pattern.test(line))) return undefined;
  return line;
}

/** Docker's client warning about this daemon's network settings: not the job's output. */
export const DOCKER_RUN_NOISE = /^WARNING: IPv4 forwarding is disabled\. Networking will not work\.\r?\n/;
