import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import type { Context } from '../../context.js';
import { CycleError, ExitCode } from '../../errors.js';
import { loadProject } from '../../project/load.js';
import { resolveProjectName } from '../../api/connect.js';
import { ApiError } from '../../api/client.js';
import { buildStateOf } from '../../api/schemas.js';
import { checkBuildFlags } from '../../runner/cycleswap-build.js';
import { collectBuildInputs } from '../../build-hash/hash.js';
import { LARGE_PACK_BYTES, packProject } from '../../pack/pack.js';
import { warnSecrets } from './pack.js';
import { formatBytes, formatDuration, transferLine } from '../../ui/ui.js';
import { collectGarbage, limitYoungGeneration } from '../../util/gc.js';
import type { UploadOptions } from './upload.command.js';

export async function run(options: UploadOptions, ctx: Context): Promise<number> {
  // From the start: the project's loading and build hash grew V8's young generation to its
  // 16 MB semi-spaces before packing capped it, ~13 MB more heap for all of the upload.
  limitYoungGeneration();
  checkBuildFlags(options);
  // An invalid project is refused before any network call.
  const project = await loadProject(ctx.cwd);
  const name = await resolveProjectName(ctx, options.project, project);
  const buildHash =
    project.format === 'cycleswap'
      ? (await collectBuildInputs(project)).hash
      : (await import('../../build-hash/oci-hash.js').then(({ computalotBuildHash }) => computalotBuildHash(project))).hash;
  const spinner = await ctx.ui.spinner('packing the project');
  collectGarbage(); // packing starts from a clean heap: what the build hash read is garbage
  const packed = await packProject(project.root);
  spinner.stop();
  collectGarbage(); // the upload starts from a clean heap (`project pack` exits instead: no collection)
  try {
    // The client (zod schemas, undici) loads after packing: it reuses the memory packing freed.
    const api = await ctx.api(options);
    warnSecrets(packed.selection, ctx);
    if (packed.size > LARGE_PACK_BYTES)
      ctx.ui.warn(`the upload is ${formatBytes(packed.size)}: leave data and virtualenvs out with .cycleignore, use volumes for data`);
    throwIfInterrupted(ctx.signal);
    const current = await api.status(name, ctx.signal);
    // A server that does not say its content hash gets the upload (it is content-addressed).
    if (current && current.content_hash === packed.contentHash && !options.force && !options.rebuild && !options.clean) {
      const state = buildStateOf(current);
      const result = {
        project: name,
        uploaded: false,
        reason: 'unchanged',
        revision: current.revision ?? null,
        content_hash: packed.contentHash,
        build_hash: current.build_hash ?? null,
        rebuild: state === undefined ? null : state !== 'ready',
        format: project.format,
      };
      if (options.json) ctx.ui.json(result);
      else {
        ctx.ui.info(`unchanged since revision ${current.revision ?? '-'}: nothing to upload (--force uploads anyway)`);
        ctx.ui.out(`revision ${current.revision ?? '-'}  content ${packed.contentHash.slice(0, 12)}  build ${current.build_hash?.slice(0, 12) ?? '-'}`);
      }
      return ExitCode.ok;
    }
    const started = ctx.clock.now();
    ctx.ui.info(`uploading ${name}: ${formatBytes(packed.size)}, ${packed.selection.fileCount} files`);
    let collectedAt = 0;
    const push = () =>
      api.push(
        name,
        {
          open: () => createReadStream(packed.file),
          length: packed.size,
          contentType: 'application/gzip',
          onProgress: (sent) => {
            ctx.ui.live(transferLine(sent, packed.size, ctx.clock.now() - started));
            // The file's read buffers are garbage once sent; collect them as packing does (util/gc.ts),
            // every 8 MB: at 32 MB the upload's garbage on top of the client's modules was the peak.
            if (sent - collectedAt >= 8 << 20) {
              collectedAt = sent;
              collectGarbage();
            }
          },
        },
        { rebuild: options.rebuild, clean: options.clean, buildHash },
        // Ctrl-C stops the upload (the request is destroyed) and the command exits 130.
        ctx.signal,
      );
    const pushed = await push().catch(async (error: unknown) => {
      // A backend where projects are made before they are pushed to (POST /api/v1/projects).
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
      ctx.ui.clearLive();
      ctx.ui.info(`the backend has no project ${name}: creating it`);
      await api.createProject(name);
      return push();
    });
    ctx.ui.clearLive();
    if (pushed.build_hash_matches === false)
      ctx.ui.warn(
        `the server computed build hash ${pushed.build_hash?.slice(0, 12) ?? '(not given)'}, not ${buildHash.slice(0, 12)}: it may follow other rules`,
      );
    // The push's answer is not documented: every field it sends is kept (--json), and the hashes
    // it leaves out are the ones cycle computed for what it sent.
    const result = {
      ...pushed,
      project: name,
      uploaded: true,
      revision: pushed.revision ?? null,
      content_hash: pushed.content_hash ?? packed.contentHash,
      build_hash: pushed.build_hash ?? buildHash,
      format: pushed.format ?? project.format,
      bytes: packed.size,
      seconds: (ctx.clock.now() - started) / 1000,
    };
    if (options.json) ctx.ui.json(result);
    else {
      const revision = result.revision === null ? '' : `: revision ${result.revision}`;
      ctx.ui.success(`uploaded ${name} in ${formatDuration(ctx.clock.now() - started)}${revision}${pushed.unchanged ? ' (same content as before)' : ''}`);
      ctx.ui.out(`revision ${result.revision ?? '-'}  content ${result.content_hash.slice(0, 12)}  build ${result.build_hash.slice(0, 12)}`);
      if (pushed.rebuild === true) ctx.ui.info('the backend builds the image on the next job (or now: cycle project prepare)');
      else if (pushed.rebuild === false) ctx.ui.info('the backend reuses its image (build inputs unchanged)');
    }
    return ExitCode.ok;
  } finally {
    await fs.rm(packed.file, { force: true });
  }
}

function throwIfInterrupted(signal: AbortSignal): void {
  if (signal.aborted) throw new CycleError({ message: 'interrupted: nothing was uploaded', exitCode: ExitCode.interrupted });
}
