import type { Command } from 'commander';
import { CommanderError } from 'commander';
import { CycleError, ExitCode, isCycleError } from './errors.js';
import type { Context, GlobalOptions } from './context.js';
import type { IO } from './ui/streams.js';
import { cycleVersion } from './version.js';
import { buildProgram, type Invocation } from './program.js';
import { defineGroup, type Declaration, type GroupDeclaration, type ProgramDeclaration } from './commands/declaration.js';
import { globalFlags } from './commands/shared-flags.js';
import { escapeForTerminal } from './ui/escape.js';

/**
 * A group of commands whose declarations load only when the group is needed: `cycle project
 * validate` loads the project group's declarations, not the other groups' (each module costs
 * start-up time). Declarations are small and import nothing heavy; a command's logic loads only
 * when it runs.
 */
interface LazyGroup extends Omit<GroupDeclaration, 'kind' | 'commands'> {
  load: () => Promise<Declaration[]>;
  /**
   * Each command's declaration on its own, by name: `cycle project hash` needs only hash's (its
   * seven siblings cost ~20 M instructions to load and wire into commander, ~4 ms).
   */
  loadOne?: Readonly<Record<string, () => Promise<Declaration>>>;
}

/** Every group of cycle, in the order help lists them. A new command goes in its group's load (docs/design.md). */
const groups: LazyGroup[] = [
  {
    name: 'project',
    summary: 'create, check, build, run and ship a project',
    examples: ['cycle project init my-exp --template python', 'cycle project validate', 'cycle project test'],
    load: async () => {
      const [{ init }, { validate }, { hash }, { test }, { pack }, { create }, { upload }, remote] = await Promise.all([
        import('./commands/project/init.command.js'),
        import('./commands/project/validate.command.js'),
        import('./commands/project/hash.command.js'),
        import('./commands/project/test.command.js'),
        import('./commands/project/pack.command.js'),
        import('./commands/project/create.command.js'),
        import('./commands/project/upload.command.js'),
        import('./commands/project/remote.command.js'),
      ]);
      return [init, validate, hash, test, pack, create, upload, remote.prepare, remote.status, remote.invalidate];
    },
    loadOne: {
      init: async () => (await import('./commands/project/init.command.js')).init,
      validate: async () => (await import('./commands/project/validate.command.js')).validate,
      hash: async () => (await import('./commands/project/hash.command.js')).hash,
      test: async () => (await import('./commands/project/test.command.js')).test,
      pack: async () => (await import('./commands/project/pack.command.js')).pack,
      create: async () => (await import('./commands/project/create.command.js')).create,
      upload: async () => (await import('./commands/project/upload.command.js')).upload,
      prepare: async () => (await import('./commands/project/remote.command.js')).prepare,
      status: async () => (await import('./commands/project/remote.command.js')).status,
      invalidate: async () => (await import('./commands/project/remote.command.js')).invalidate,
    },
  },
  {
    name: 'auth',
    summary: 'log in to a backend, check, log out',
    examples: [],
    load: async () => {
      const auth = await import('./commands/auth.command.js');
      return [auth.login, auth.status, auth.logout];
    },
  },
  {
    name: 'job',
    summary: 'submit jobs and follow them: from the shell and from scripts',
    examples: [`id=$(cycle job submit --payload '{"n": [1,2,3]}' --fan-out-by n)`, 'cycle job watch "$id"', 'cycle job results "$id" --json | jq .items'],
    load: async () => {
      const [{ submit, queue }, { batch }, jobRead, { pull }] = await Promise.all([
        import('./commands/job/submit.command.js'),
        import('./commands/job/batch.command.js'),
        import('./commands/job/read.command.js'),
        import('./commands/job/pull.command.js'),
      ]);
      return [submit, queue, batch, jobRead.list, jobRead.get, jobRead.tasks, jobRead.results, jobRead.logs, jobRead.tail, jobRead.watch, jobRead.cancel, pull];
    },
  },
  {
    name: 'daemon',
    summary: "run this machine's share of a queue (cycle server's tasks) and control it: status, pause, resume",
    examples: [
      'CYCLE_MACHINE_TOKEN=$(cat token) cycle daemon run --api-url https://queue.example:8787 --name gpu-a',
      'cycle daemon status',
      'cycle daemon pause 2h',
      'cycle daemon resume',
    ],
    load: async () => {
      const [{ run }, { status }, { pause, resume }, busy, { unit }] = await Promise.all([
        import('./commands/daemon/run.command.js'),
        import('./commands/daemon/status.command.js'),
        import('./commands/daemon/pause.command.js'),
        import('./commands/daemon/busy-assign.command.js'),
        import('./commands/daemon/unit.command.js'),
      ]);
      return [run, status, pause, resume, busy.forbidBusyAssign, busy.allowBusyAssign, unit];
    },
  },
  {
    name: 'volume',
    summary: 'upload folders as read-only volumes for jobs; list, remove',
    examples: ['cycle volume upload ./data --name training-data'],
    load: async () => {
      const volume = await import('./commands/volume.command.js');
      return [volume.upload, volume.list, volume.rm];
    },
  },
  {
    name: 'artifacts',
    summary: "upload input files; list and download jobs' output files",
    examples: [],
    load: async () => {
      const artifacts = await import('./commands/artifacts.command.js');
      return [artifacts.list, artifacts.download, artifacts.upload];
    },
  },
  {
    name: 'recipe',
    summary: 'sealed runtimes with a typed payload: list, show, submit',
    examples: [],
    load: async () => {
      const recipe = await import('./commands/recipe.command.js');
      return [recipe.list, recipe.show, recipe.submit];
    },
  },
  {
    name: 'account',
    summary: "the account's balance, holds and ledger",
    examples: [],
    load: async () => {
      const account = await import('./commands/account.command.js');
      return [account.balance, account.holds, account.ledger];
    },
  },
  {
    name: 'machine',
    summary: "the machines that run a cycle server's queue (cycle daemon run on each): tokens, list, drain, remove",
    examples: ['cycle machine token create --name gpu-a', 'cycle machine list'],
    load: async () => {
      const machine = await import('./commands/machine.command.js');
      return [machine.token, machine.list, machine.show, machine.drain, machine.undrain, machine.remove];
    },
  },
  {
    name: 'kv',
    summary: "a project's small shared JSON values",
    examples: [],
    load: async () => {
      const kv = await import('./commands/kv.command.js');
      return [kv.get, kv.set, kv.list];
    },
  },
];

/** The commands outside groups, after the groups in help. */
async function loadTopLevel(): Promise<Declaration[]> {
  const [{ server }, { serverGc }, { dashboard }, { doctor }, { completion }, { help }] = await Promise.all([
    import('./commands/server.command.js'),
    import('./commands/server-gc.command.js'),
    import('./commands/dashboard.command.js'),
    import('./commands/doctor.command.js'),
    import('./commands/completion.command.js'),
    import('./commands/help.command.js'),
  ]);
  return [server, serverGc, dashboard, doctor, completion, help];
}

const program: Omit<ProgramDeclaration<typeof globalFlags>, 'commands'> = {
  kind: 'program',
  name: 'cycle',
  summary: 'Run .cycleswap/ and Computalot projects locally in Docker and on a Computalot-style backend.',
  versionFlag: { flags: '-v, --version', description: 'print the version' },
  flags: globalFlags,
  examples: ['cycle project init --template python', 'cycle project test', 'cycle help exit-codes'],
};

async function loadGroup(group: LazyGroup, command?: string): Promise<GroupDeclaration> {
  const { load, loadOne, ...help } = group;
  const one = command !== undefined && loadOne && Object.hasOwn(loadOne, command) ? loadOne[command] : undefined;
  return defineGroup({ ...help, commands: one ? [await one()] : await load() });
}

/**
 * Every command of cycle (help, completion, suggestions for a mistyped word). With `argv`, only
 * what that command line can reach: when it starts with a group's name and asks for no help, that
 * group alone, and when its next word names one of the group's commands, that command alone
 * (commander picks a subcommand by its name, so the smaller tree parses the line exactly as the
 * whole tree would).
 */
export async function loadCommands(argv?: readonly string[]): Promise<ProgramDeclaration<typeof globalFlags>> {
  const words = argv?.slice(2) ?? [];
  const only = groups.find((group) => group.name === words[0]);
  if (only && !words.some((word) => word === '-h' || word === '--help')) return { ...program, commands: [await loadGroup(only, words[1])] };
  const [loaded, topLevel] = await Promise.all([Promise.all(groups.map((group) => loadGroup(group))), loadTopLevel()]);
  return { ...program, commands: [...loaded, ...topLevel] };
}

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
  // stdin is opened when first read: most commands never do, and opening it costs a few ms.
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    get stdin() {
      return process.stdin;
    },
  };
}

/** The whole CLI: parses argv, runs one command, prints any error, returns the exit code. */
export async function main(argv: string[], options: MainOptions = {}): Promise<number> {
  const io = options.io ?? processIO();
  const env = options.env ?? process.env;
  const state: RunState = { exitCode: ExitCode.ok, debug: argv.includes('--debug'), outputClosed: false };
  if (options.io === undefined) endQuietlyWhenOutputCloses(state);
  try {
    const program = buildProgram(await loadCommands(argv), io, cycleVersion(), (invocation) => runCommand(invocation, io, env, state, options));
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
    const exitCode = signal === 'SIGTERM' ? ExitCode.terminated : ExitCode.interrupted;
    if (interrupts === 1) {
      io.stderr.write(`\n${signal === 'SIGTERM' ? 'terminating' : 'interrupting'}: stopping and cleaning up (press Ctrl-C again to force)\n`);
      // The reason reaches every request of the command (the API client listens to ctx.signal).
      controller.abort(new CycleError({ message: signal === 'SIGTERM' ? 'terminated' : 'interrupted', exitCode }));
    } else {
      io.stderr.write('forced exit: containers or temp files may be left behind\n');
      process.exit(exitCode);
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
    if (controller.signal.aborted) {
      // The command failed because it was stopped: say so, with the signal's code (130 Ctrl-C, 143 SIGTERM).
      const reason: unknown = controller.signal.reason;
      const exitCode = isCycleError(reason) ? reason.exitCode : ExitCode.interrupted;
      if (isCycleError(error) && error.exitCode === exitCode) throw error;
      if (isCycleError(error) && error.exitCode === ExitCode.interrupted)
        throw new CycleError({ message: error.message, ...(error.hint ? { hint: error.hint } : {}), details: error.details, exitCode, cause: error });
      throw new CycleError({ message: isCycleError(reason) ? reason.message : 'interrupted', exitCode, cause: error });
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
  // Messages carry what a server sent (its error text, names): escaped on a terminal.
  const shown = (text: string): string => (io.stderr.isTTY ? escapeForTerminal(text) : text);
  if (isCycleError(error)) {
    io.stderr.write(`${red('error:')} ${shown(error.message)}\n`);
    for (const line of error.details) io.stderr.write(`  ${shown(line)}\n`);
    if (error.hint) io.stderr.write(`hint: ${shown(error.hint)}\n`);
    if (state.debug && error.cause instanceof Error) io.stderr.write(`${error.cause.stack ?? String(error.cause)}\n`);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  io.stderr.write(`${red('error:')} ${shown(message.split('\n')[0] ?? '')}\n`);
  if (state.debug) io.stderr.write(`${error instanceof Error ? (error.stack ?? '') : ''}\n`);
  else io.stderr.write('hint: this is unexpected; run the command again with --debug and report the output\n');
  return ExitCode.failure;
}

/** The whole commander tree, for introspection (tests); it runs nothing. */
export async function createProgram(io: IO = processIO()): Promise<Command> {
  return buildProgram(await loadCommands(), io, cycleVersion(), async () => undefined);
}
