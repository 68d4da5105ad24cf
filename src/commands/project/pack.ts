import path from 'node:path';
import { isInside } from '../../util/paths.js';
import type { Context } from '../../context.js';
import { ExitCode } from '../../errors.js';
import { findProjectRoot } from '../../project/load.js';
import { selectFiles, type Selection } from '../../pack/select.js';
import { largestFiles, LARGE_PACK_BYTES, packProject } from '../../pack/pack.js';
import { formatBytes } from '../../ui/ui.js';
import type { PackOptions } from './pack.command.js';

export async function run(options: PackOptions, ctx: Context): Promise<number> {
  const { root } = await findProjectRoot(ctx.cwd);
  if (options.list) {
    const selection = await selectFiles(root);
    warnSecrets(selection, ctx);
    if (options.json)
      ctx.ui.json({
        root,
        files: selection.entries.filter((e) => e.type !== 'directory').map((e) => ({ path: e.path, type: e.type, size: e.size })),
        excluded_secrets: selection.excludedSecrets,
      });
    else for (const entry of selection.entries) if (entry.type !== 'directory') ctx.ui.out(entry.path);
    return ExitCode.ok;
  }
  const out = path.resolve(ctx.cwd, options.out ?? `${path.basename(root)}.tar.gz`);
  if (isInside(root, out)) {
    // Packing into the project would pack the tarball into itself next time.
    ctx.ui.warn(`${path.relative(ctx.cwd, out)} is inside the project: add it to .cycleignore, or use --out outside the project`);
  }
  // The selection is walked as it is packed (the first files compress while the walk goes on);
  // its warnings come once it is known.
  const result = await packProject(root, { out });
  const { selection } = result;
  warnSecrets(selection, ctx);
  const largest = largestFiles(selection);
  if (options.json) {
    ctx.ui.json({
      file: out,
      content_hash: result.contentHash,
      size: result.size,
      files: selection.fileCount,
      bytes: selection.totalBytes,
      largest,
      excluded_secrets: selection.excludedSecrets,
    });
  } else {
    ctx.ui.out(out);
    ctx.ui.info(
      `${formatBytes(result.size)} (${selection.fileCount} files, ${formatBytes(selection.totalBytes)} before compression), content hash ${result.contentHash.slice(0, 12)}`,
    );
    if (largest.length) {
      ctx.ui.info('largest files:');
      for (const file of largest) ctx.ui.info(`  ${formatBytes(file.size).padStart(10)}  ${file.path}`);
    }
  }
  if (result.size > LARGE_PACK_BYTES)
    ctx.ui.warn(
      `the tarball is ${formatBytes(result.size)} (over ${formatBytes(LARGE_PACK_BYTES)}): leave data, checkpoints and virtualenvs out with .cycleignore, and use volumes for data`,
    );
  return ExitCode.ok;
}

export function warnSecrets(selection: Selection, ctx: Context): void {
  for (const file of selection.excludedSecrets) {
    ctx.ui.warn(`left out ${file}: it looks like a secret; to ship it on purpose, add the line "!${file}" to .cycleignore`);
  }
}
