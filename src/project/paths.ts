/** Where project files live, relative to the project root. Kept free of imports: loaded on every command. */
export const MANIFEST_PATH = '.cycleswap/manifest.toml';
export const RUN_SCRIPT_PATH = '.cycleswap/run.sh';
export const BUILD_SCRIPT_PATH = '.cycleswap/build.sh';
export const COMPUTALOT_MANIFEST_PATH = 'computalot.project.json';
/** An OCI project's `build` when the manifest does not say: `docker build -f Dockerfile .` at the root. */
export const DEFAULT_DOCKERFILE = 'Dockerfile';
export const DEFAULT_BUILD_CONTEXT = '.';
