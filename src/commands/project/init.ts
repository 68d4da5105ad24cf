import fs from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '../../context.js';
import { CycleError, ExitCode, usageError } from '../../errors.js';
import { renderTemplate, type TemplateFormat, type TemplateName } from '../../scaffold/render.js';
import { PROJECT_NAME_PATTERN, PROJECT_NAME_RULE, toProjectName } from '../../project/names.js';
import { COMPUTALOT_MANIFEST_PATH } from '../../project/paths.js';
import { ensureStateDir, stateDir } from '../../project/state.js';
import { pathExists } from '../../util/fs.js';
import type { InitOptions } from './init.command.js';

const FORMATS: TemplateFormat[] = ['cycleswap', 'computalot'];
const TEMPLATES: TemplateName[] = ['python', 'shell'];

export async function run(options: InitOptions, ctx: Context): Promise<number> {
  const root = path.resolve(ctx.cwd, options.dir);
  const ask = ctx.prompt.available;
  const format = options.format ?? (ask ? ((await ctx.prompt.choose('Project format', FORMATS, 'cycleswap')) as TemplateFormat) : 'cycleswap');
  const template = options.template ?? (ask ? ((await ctx.prompt.choose('Template', TEMPLATES, 'python')) as TemplateName) : 'python');
  const suggested = toProjectName(path.basename(root));
  const name = options.name ?? (ask ? await ctx.prompt.ask('Project name', suggested) : suggested);
  if (!PROJECT_NAME_PATTERN.test(name)) {
    throw usageError(`invalid --name ${JSON.stringify(name)}: expected ${PROJECT_NAME_RULE}`, `try --name ${toProjectName(name)}`);
  }

  const other = format === 'cycleswap' ? COMPUTALOT_MANIFEST_PATH : '.cycleswap';
  if (await pathExists(path.join(root, other))) {
    throw new CycleError({
      message: `${root} already holds a ${format === 'cycleswap' ? 'computalot' : '.cycleswap/'} project (${other}); a project has one format`,
      hint: `remove ${other} first, or pass --format ${format === 'cycleswap' ? 'computalot' : 'cycleswap'}`,
      exitCode: ExitCode.usage,
    });
  }

  const rendered = await renderTemplate(format, template, { name });
  const existingProjectFiles: string[] = [];
  for (const file of rendered.files) {
    if (file.kind === 'project' && (await pathExists(path.join(root, file.to)))) existingProjectFiles.push(file.to);
  }
  if (existingProjectFiles.length > 0 && !options.force) {
    throw new CycleError({
      message: `${root} already has a project: ${existingProjectFiles.join(', ')}`,
      hint: 'pass --force to replace these files (the old ones are kept under .cycle/backups/)',
      exitCode: ExitCode.failure,
    });
  }

  await fs.mkdir(root, { recursive: true });
  let backupDir: string | undefined;
  if (existingProjectFiles.length > 0) {
    await ensureStateDir(root);
    backupDir = path.join(stateDir(root), 'backups', new Date(ctx.clock.now()).toISOString().replace(/[:.]/g, '-'));
    for (const file of existingProjectFiles) {
      await fs.mkdir(path.dirname(path.join(backupDir, file)), { recursive: true });
      await fs.copyFile(path.join(root, file), path.join(backupDir, file));
    }
  }

  const written: string[] = [];
  const kept: string[] = [];
  for (const file of rendered.files) {
    const target = path.join(root, file.to);
    if (file.kind === 'source' && (await pathExists(target))) {
      kept.push(file.to);
      continue;
    }
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.writeFile(target, file.content);
    await fs.chmod(target, file.mode);
    written.push(file.to);
  }

  const relativeRoot = path.relative(ctx.cwd, root) || '.';
  ctx.ui.success(`created ${format === 'cycleswap' ? '.cycleswap/' : 'computalot'} project "${name}" in ${relativeRoot} (template: ${template})`);
  for (const file of written) ctx.ui.info(`  ${existingProjectFiles.includes(file) ? 'replaced' : 'wrote   '} ${file}`);
  for (const file of kept) ctx.ui.info(`  kept     ${file} (already there)`);
  if (backupDir) ctx.ui.info(`  the replaced files are saved in ${path.relative(ctx.cwd, backupDir)}`);
  ctx.ui.info('');
  ctx.ui.info('Next:');
  if (relativeRoot !== '.') ctx.ui.info(`  cd ${relativeRoot}`);
  ctx.ui.info('  cycle project validate');
  ctx.ui.info('  cycle project test');
  return ExitCode.ok;
}
