import type { Context } from '../../context.js';
import { ExitCode } from '../../errors.js';
import { loadProject, type CycleswapProject } from '../../project/load.js';
import { collectBuildInputs, explainChanges, type InputChange } from '../../build-hash/hash.js';
import type { HashOptions } from './hash.command.js';

export async function run(options: HashOptions, ctx: Context): Promise<number> {
  const project = await loadProject(ctx.cwd);
  if (project.format === 'computalot') {
    const { computalotBuildHash } = await import('../../build-hash/oci-hash.js');
    const result = await computalotBuildHash(project);
    if (options.json) ctx.ui.json({ hash: result.hash, format: project.format, files: result.files.length });
    else ctx.ui.out(result.hash);
    if (options.explain)
      ctx.ui.info(
        '--explain compares .cycleswap/ builds; an OCI project is rebuilt when any file of its Docker build context, or its "build" settings, change',
      );
    return ExitCode.ok;
  }
  return cycleswapHash(project, options, ctx);
}

async function cycleswapHash(project: CycleswapProject, options: HashOptions, ctx: Context): Promise<number> {
  const { hash, inputs, cache } = await collectBuildInputs(project, { now: () => ctx.clock.now() });
  const last = options.explain ? await import('../../runner/build-store.js').then(({ localBuildStore }) => localBuildStore(project.root).last()) : undefined;
  const changes = last?.inputs ? explainChanges(last.inputs, inputs) : undefined;
  if (options.json) {
    ctx.ui.json({
      hash,
      format: project.format,
      inputs,
      cache,
      ...(options.explain
        ? {
            lastBuild: last ? { hash: last.hash, builtAt: last.builtAt, image: last.image.tag } : null,
            changed: last ? last.hash !== hash : null,
            changes: changes ?? null,
          }
        : {}),
    });
    return ExitCode.ok;
  }
  ctx.ui.out(hash);
  if (!options.explain) return ExitCode.ok;
  if (!last) {
    ctx.ui.out('no previous build: the next `cycle project test` builds from the base image ' + inputs.image);
    return ExitCode.ok;
  }
  if (last.hash === hash) {
    ctx.ui.out(`unchanged since the last build (${last.builtAt}, image ${last.image.tag}): no rebuild needed`);
    return ExitCode.ok;
  }
  ctx.ui.out(`changed since the last build (${last.builtAt}, ${last.hash.slice(0, 12)}):`);
  for (const change of changes ?? []) ctx.ui.out(`  ${describeChange(change)}`);
  return ExitCode.ok;
}

export function describeChange(change: InputChange): string {
  switch (change.kind) {
    case 'image':
      return `image: ${change.before} → ${change.after}`;
    case 'build.sh':
      return `modified: .cycleswap/build.sh`;
    case 'format':
      return `hash format: ${change.before} → ${change.after}`;
    case 'mode':
      return `mode: ${change.path} (${change.detail})`;
    case 'modified':
      return `modified: ${change.path} (${change.detail})`;
    default:
      return `${change.kind}: ${change.path}`;
  }
}
