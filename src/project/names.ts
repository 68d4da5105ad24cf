/** Project names: what the platform accepts in URLs and image names. */
export const PROJECT_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
export const PROJECT_NAME_RULE = 'a name of 1-63 characters: lowercase letters, digits, ".", "_" or "-", starting with a letter or digit';

/** Volume names become `/volumes/<name>`: the same safe charset. */
export const VOLUME_NAME_PATTERN = PROJECT_NAME_PATTERN;

/** `_artifacts.download` names become `/computalot/artifacts/<name>/`: no "/", no leading ".". */
export const DIRECTIVE_NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
export const DIRECTIVE_NAME_RULE = 'a name of 1-128 characters: letters, digits, ".", "_" or "-", not starting with "."';

export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const ENV_NAME_RULE = 'a shell variable name: letters, digits and "_", not starting with a digit';

/** A best-effort conversion of any text to a valid project name. */
export function toProjectName(text: string): string {
  const slug = text
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .replace(/-+$/, '')
    .slice(0, 63);
  return slug === '' ? 'my-project' : slug;
}

export function toEnvName(text: string): string {
  const cleaned = text.replace(/[^A-Za-z0-9_]+/g, '_');
  return /^[0-9]/.test(cleaned) ? `_${cleaned}` : cleaned === '' ? '_' : cleaned;
}

/** Platform volumes are written `builtin/<name>` in `[main].volumes`. */
export const BUILTIN_VOLUME_PREFIX = 'builtin/';
/** A `[main].volumes` entry: a volume name, or `builtin/` and a volume name. */
export const MANIFEST_VOLUME_PATTERN = new RegExp(`^(?:${BUILTIN_VOLUME_PREFIX})?${VOLUME_NAME_PATTERN.source.slice(1, -1)}$`);
export const MANIFEST_VOLUME_RULE =
  'a volume name (1-63 characters: lowercase letters, digits, ".", "_" or "-", starting with a letter or digit), or "builtin/" and such a name for a platform volume';
