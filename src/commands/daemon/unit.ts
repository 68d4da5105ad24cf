import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Context } from '../../context.js';
import { ExitCode, usageError } from '../../errors.js';
import { defaultDaemonDataDir } from '../../daemon/data-dir.js';
import { defaultEnvironmentFile, systemdUnit } from '../../daemon/unit.js';
import { writeFileAtomic } from '../../util/fs.js';
import { positiveInteger } from '../args.js';
import type { UnitOptions } from './unit.command.js';

/** `cycle daemon unit`: the systemd unit on stdout, or in `--output`. */
export async function unit(options: UnitOptions, ctx: Context): Promise<number> {
  if (!options.apiUrl)
    throw usageError(
      '--api-url is required: the queue server the daemon works for',
      'e.g. cycle daemon unit --api-url https://queue.example:8443 --name gpu-a',
    );
  if (!options.name) throw usageError("--name is required: this machine's name", 'e.g. cycle daemon unit --api-url https://queue.example:8443 --name gpu-a');
  const me = ctx.env.USER ?? os.userInfo().username;
  const user = options.user ?? me;
  if (user !== me && !options.dataDir)
    throw usageError(`--user ${user} is not you (${me}): pass --data-dir too (that user's folder, e.g. /home/${user}/.local/share/cycle/daemon)`);
  const text = systemdUnit({
    command: await cycleCommand(),
    apiUrl: options.apiUrl,
    name: options.name,
    slots: positiveInteger(options.slots, '--slots'),
    dataDir: options.dataDir ? path.resolve(ctx.cwd, options.dataDir) : defaultDaemonDataDir(ctx.env),
    environmentFile: options.environmentFile ? path.resolve(ctx.cwd, options.environmentFile) : defaultEnvironmentFile(options.name),
    user,
    insecure: options.insecure,
  });
  if (!options.output) {
    ctx.ui.rawOut(text);
    return ExitCode.ok;
  }
  const file = path.resolve(ctx.cwd, options.output);
  await writeFileAtomic(file, text, 0o644);
  ctx.ui.success(`wrote ${file}`);
  ctx.ui.info(
    `next: put CYCLE_MACHINE_TOKEN=<the token of \`cycle machine token create\`> in ${options.environmentFile ?? defaultEnvironmentFile(options.name)} (chmod 600), then: sudo systemctl daemon-reload && sudo systemctl enable --now ${path.basename(file, '.service')}`,
  );
  return ExitCode.ok;
}

/** This cycle, as absolute paths: node and the script it runs (systemd has no PATH of the user). */
async function cycleCommand(): Promise<string[]> {
  const script = process.argv[1];
  if (!script) return [process.execPath];
  return [process.execPath, await fs.realpath(script).catch(() => path.resolve(script))];
}
