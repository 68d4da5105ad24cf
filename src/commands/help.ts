import type { Context } from '../context.js';
import { CycleError, ExitCode, exitCodeTable } from '../errors.js';
import type { CliTree } from './declaration.js';
import type { HelpOptions } from './help.command.js';

/** `cycle help [topic...]`: a command's help, or a topic (exit-codes). */
export async function run(options: HelpOptions, ctx: Context, cli: CliTree): Promise<void> {
  const { topic } = options;
  if (topic.length === 1 && topic[0] === 'exit-codes') {
    ctx.io.stdout.write(formatExitCodes());
    return;
  }
  if (!cli.showHelp(topic)) {
    throw new CycleError({
      message: `no help topic "${topic.join(' ')}"`,
      hint: 'run `cycle --help` for the commands, or `cycle help exit-codes`',
      exitCode: ExitCode.usage,
    });
  }
}

export function formatExitCodes(): string {
  const lines = ['Exit codes of cycle:', ''];
  for (const row of exitCodeTable) lines.push(`  ${String(row.code).padStart(3)}  ${row.name.padEnd(16)} ${row.meaning}`);
  return lines.join('\n') + '\n';
}
