import type { Command } from 'commander';
import { CommanderError } from 'commander';
import { CycleError, ExitCode, isCycleError } from './errors.js';
import type { Context, GlobalOptions } from './context.js';
import type { IO } from './ui/streams.js';
import { cycleVersion } from './version.js';
import { buildProgram, type Invocation } from './program.js';
import { defineGroup, type ProgramDeclaration } from './commands/declaration.js';
import { globalFlags } from './commands/shared-flags.js';
// Each declaration is small and imports nothing heavy; a command's logic loads only when it runs.
import { init } from './commands/project/init.command.js';
import { validate } from './commands/project/validate.command.js';
import { hash } from './commands/project/hash.command.js';
import { test } from './commands/project/test.command.js';
import { pack } from './commands/project/pack.command.js';
import { upload } from './commands/project/upload.command.js';
import * as remote from './commands/project/remote.command.js';
import * as auth from './commands/auth.command.js';
import { submit, queue } from './commands/job/submit.command.js';
import { pull } from './commands/job/pull.command.js';
import * as volume from './commands/volume.command.js';
import { batch } from './commands/job/batch.command.js';
import * as jobRead from './commands/job/read.command.js';
import * as artifacts from './commands/artifacts.command.js';
import * as kv from './commands/kv.command.js';
import * as recipe from './commands/recipe.command.js';
import * as account from './commands/account.command.js';
import { create as projectCreate } from './commands/project/create.command.js';
import { serverGc } from './commands/server-gc.command.js';
import { server } from './commands/server.command.js';
import { doctor } from './commands/doctor.command.js';
import { completion } from './commands/completion.command.js';
import { help } from './commands/help.command.js';

/** Every command of cycle, in the order help lists them. A new command goes here (docs/design.md). */
export const commands: ProgramDeclaration<typeof globalFlags> = {
  kind: 'program',
  name: 'cycle',
  summary: 'Run .cycleswap/ and Computalot projects locally in Docker and on a Computalot-style backend.',
  versionFlag: { flags: '-v, --version', description: 'print the version' },
  flags: globalFlags,
  examples: ['cycle project init --template python', 'cycle project test', 'cycle help exit-codes'],
  commands: [
    defineGroup({
      name: 'project',
      summary: 'create, check, build, run and ship a project',
      examples: ['cycle project init my-exp --template python', 'cycle project validate', 'cycle project test'],
      commands: [init, validate, hash, test, pack, projectCreate, upload, remote.prepare, remote.status, remote.invalidate],
    }),
    defineGroup({ name: 'auth', summary: 'log in to a backend, check, log out', examples: [], commands: [auth.login, auth.status, auth.logout] }),
    defineGroup({
      name: 'job',
      summary: 'submit jobs and follow them: from the shell and from scripts',
      examples: [`id=$(cycle job submit --payload '{"n": [1,2,3]}' --fan-out-by n)`, 'cycle job watch "$id"', 'cycle job results "$id" --json | jq .items'],
      commands: [
        submit,
        queue,
        batch,
        jobRead.list,
        jobRead.get,
        jobRead.tasks,
        jobRead.results,
        jobRead.logs,
        jobRead.tail,
        jobRead.watch,
        jobRead.cancel,
        pull,
      ],
    }),
    defineGroup({
      name: 'volume',
      summary: 'upload folders as read-only volumes for jobs; list, remove',
      examples: ['cycle volume upload ./data --name training-data'],
      commands: [volume.upload, volume.list, volume.rm],
    }),
    defineGroup({
      name: 'artifacts',
      summary: "upload input files; list and download jobs' output files",
      examples: [],
      commands: [artifacts.list, artifacts.download, artifacts.upload],
    }),
    defineGroup({
      name: 'recipe',
      summary: 'sealed runtimes with a typed payload: list, show, submit',
      examples: [],
      commands: [recipe.list, recipe.show, recipe.submit],
    }),
    defineGroup({
      name: 'account',
      summary: "the account's balance, holds and ledger",
      examples: [],
      commands: [account.balance, account.holds, account.ledger],
    }),
    defineGroup({ name: 'kv', summary: "a project's small shared JSON values", examples: [], commands: [kv.get, kv.set, kv.list] }),
    server,
    serverGc,
    doctor,
    completion,
    help,
  ],
};

export interface MainOptions {
  io?: IO;
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Tests pass a factory to inject fakes (Docker, clock, exec). */
  contextFactory?: (global: GlobalOptions, signal: AbortSignal) => Promise<Context>;
  /** Install SIGINT handlers (the real binary); tests drive cancellation themselves. */
  handleSignals?: boolean;
  /** Tests of flag parsing: receives the parsed command instead of running it (gh's runF). */
  runF?: (invocation: Invocation) => Promise<number | void>;
}

interface RunState {
  exitCode: number;
  debug: boolean;
  /** stdout's reader went away (`cycle … | head -1`): nothing more can be shown. */
  outputClosed: boolean;
  /** Stops the running command (as Ctrl-C does, so it cleans up). */
  stop?: (reason: CycleError) => void;
}

function processIO(): IO {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin };
}

/** The whole CLI: parses argv, runs one command, prints any error, returns the exit code. */
export async function main(argv: string[], options: MainOptions = {}): Promise<number> {
  const io = options.io ?? processIO();
  const env = options.env ?? process.env;
  const state: RunState = { exitCode: ExitCode.ok, debug: argv.includes('--debug'), outputClosed: false };
  if (options.io === undefined) endQuietlyWhenOutputCloses(state);
  const program = buildProgram(commands, io, cycleVersion(), (invocation) => runCommand(invocation, io, env, state, options));
  try {
    await program.parseAsync(argv);
    return state.exitCode;
  } catch (error) {
    // Stopped because nobody reads the output any more: nothing to say, and no one to say it to.
    if (state.outputClosed && isCycleError(error) && error.exitCode === ExitCode.interrupted) return ExitCode.interrupted;
    return reportError(error, io, env, state);
  }
}

/**
 * Writing to a closed pipe (`cycle --help | head -1`) fails with EPIPE, which Node reports as an
 * 'error' event: unhandled, a stack trace. Instead, later output is dropped and a command still
 * running is stopped (and cleans up) as on Ctrl-C; the exit code is the command's own, or 130
 * when it had to be stopped.
 */
function endQuietlyWhenOutputCloses(state: RunState): void {
  const onError = (stream: 'stdout' | 'stderr') => (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    if (stream === 'stdout' && !state.outputClosed) {
      state.outputClosed = true;
      state.stop?.(new CycleError({ message: 'output closed', exitCode: ExitCode.interrupted }));
    }
  };
  process.stdout.on('error', onError('stdout'));
  process.stderr.on('error', onError('stderr'));
}

/** Runs one parsed command: its logic and a context for this process, loaded side by side. */
async function runCommand(invocation: Invocation, io: IO, env: Record<string, string | undefined>, state: RunState, options: MainOptions): Promise<void> {
  const { global } = invocation;
  state.debug = global.debug;
  if (options.runF) {
    state.exitCode = (await options.runF(invocation)) ?? ExitCode.ok;
    return;
  }
  const controller = new AbortController();
  state.stop = (reason) => controller.abort(reason);
  let interrupts = 0;
  const onSigint = (signal: NodeJS.Signals): void => {
    interrupts++;
    if (interrupts === 1) {
      io.stderr.write(`\n${signal === 'SIGTERM' ? 'terminating' : 'interrupting'}: stopping and cleaning up (press Ctrl-C again to force)\n`);
      controller.abort(new CycleError({ message: 'interrupted', exitCode: ExitCode.interrupted }));
    } else {
      io.stderr.write('forced exit: containers or temp files may be left behind\n');
      process.exit(ExitCode.interrupted);
    }
  };
  const handleSignals = options.handleSignals ?? options.io === undefined;
  if (handleSignals) {
    process.on('SIGINT', onSigint);
    process.on('SIGTERM', onSigint);
  }
  try {
    const [runLoaded, ctx] = await Promise.all([
      invocation.command.load(invocation.options),
      options.contextFactory
        ? options.contextFactory(global, controller.signal)
        : import('./context.js').then(async ({ createContext, colorEnabled }) => {
            const palette = colorEnabled(io.stderr, env, global.color) ? await import('./ui/ui.js').then((m) => m.chalkPalette()) : undefined;
            return createContext({ io, env, cwd: options.cwd ?? process.cwd(), global, version: cycleVersion(), signal: controller.signal, palette });
          }),
    ]);
    const code = await runLoaded(ctx, invocation.cli);
    state.exitCode = code ?? ExitCode.ok;
  } catch (error) {
    if (controller.signal.aborted && !(isCycleError(error) && error.exitCode === ExitCode.interrupted)) {
      // The command failed because it was interrupted: say so, with the interrupted code.
      throw new CycleError({ message: 'interrupted', exitCode: ExitCode.interrupted, cause: error });
    }
    throw error;
  } finally {
    state.stop = undefined;
    if (handleSignals) {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigint);
    }
  }
}

function reportError(error: unknown, io: IO, env: Record<string, string | undefined>, state: RunState): number {
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return ExitCode.ok;
    // commander already printed its message (with "Did you mean …?")
    return ExitCode.usage;
  }
  const noColor = env.NO_COLOR !== undefined && env.NO_COLOR !== '';
  const red = (s: string): string => (io.stderr.isTTY && !noColor ? `\x1b[31m${s}\x1b[39m` : s);
  if (isCycleError(error)) {
    io.stderr.write(`${red('error:')} ${error.message}\n`);
    for (const line of error.details) io.stderr.write(`  ${line}\n`);
    if (error.hint) io.stderr.write(`hint: ${error.hint}\n`);
    if (state.debug && error.cause instanceof Error) io.stderr.write(`${error.cause.stack ?? String(error.cause)}\n`);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  io.stderr.write(`${red('error:')} ${message.split('\n')[0]}\n`);
  if (state.debug) io.stderr.write(`${error instanceof Error ? (error.stack ?? '') : ''}\n`);
  else io.stderr.write('hint: this is unexpected; run the command again with --debug and report the output\n');
  return ExitCode.failure;
}

/** The commander tree, for introspection (tests); it runs nothing. */
export function createProgram(io: IO = processIO()): Command {
  return buildProgram(commands, io, cycleVersion(), async () => undefined);
}
