import type { Project } from '../project/load.js';
import { presentBuildLine } from '../docker/build-output.js';
import { ensureCycleswapImage, type ImageBuildOptions, type ImageBuildResult } from './cycleswap-build.js';

/** The lines of a build's own output a failure message quotes (its last ones). */
const TAIL_LINES = 30;

/**
 * A pushed project's image, built by the rules of its format (the same for `cycle server` and a
 * pool machine's daemon), with the last lines of the build's own output kept for a failure's message.
 */
export async function ensureProjectImage(
  project: Project,
  name: string,
  options: Omit<ImageBuildOptions, 'onOutput'>,
): Promise<{ image: ImageBuildResult } | { error: Error; tail: string[] }> {
  const tail: string[] = [];
  const withTail: ImageBuildOptions = {
    ...options,
    onOutput: (line) => {
      const shown = presentBuildLine(line);
      if (shown === undefined) return;
      tail.push(shown);
      if (tail.length > TAIL_LINES) tail.shift();
    },
  };
  try {
    const image =
      project.format === 'cycleswap'
        ? await ensureCycleswapImage(project, withTail)
        : await import('./oci-build.js').then(({ ensureOciImage }) => ensureOciImage(project, project.name ?? name, withTail));
    return { image };
  } catch (error) {
    return { error: error as Error, tail };
  }
}
