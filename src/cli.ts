import { Argument, Command, CommanderError, Option } from 'commander';
import { CycleError, ExitCode, exitCodeTable, isCycleError } from './errors.js';
import type { Context, GlobalOptions } from './context.js';
import type { IO } from './ui/streams.js';
import { cycleVersion } from './version.js';

/** What every command module exports: flags in, exit code out. */
export interface CommandModule<O> {
  run(options: O, ctx: Context): Promise<number | void>;
}

export interface MainOptions {
  io?: IO;
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Tests pass a factory to inject fakes (Docker, clock, exec). */
  contextFactory?: (global: GlobalOptions, signal: AbortSignal) => Promise<Context>;
  /** Install SIGINT handlers (the real binary); tests drive cancellation themselves. */
  handleSignals?: boolean;
}

interface RunState {
  exitCode: number;
  debug: boolean;
}

function processIO(): IO {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin };
}

/** The whole CLI: parses argv, runs one command, prints any error, returns the exit code. */
export async function main(argv: string[], options: MainOptions = {}): Promise<number> {
  const io = options.io ?? processIO();
  const env = options.env ?? process.env;
  const state: RunState = { exitCode: ExitCode.ok, debug: argv.includes('--debug') };
  const program = buildProgram(io, env, state, options);
  try {
    await program.parseAsync(argv);
    return state.exitCode;
  } catch (error) {
    return reportError(error, io, env, state);
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

/** The command tree, for introspection (completion scripts, tests). */
export function createProgram(io: IO = processIO(), env: Record<string, string | undefined> = process.env): Command {
  return buildProgram(io, env, { exitCode: 0, debug: false }, { io, env });
}

function buildProgram(io: IO, env: Record<string, string | undefined>, state: RunState, options: MainOptions): Command {
  const program = new Command('cycle');
  const writeOut = (s: string): void => void io.stdout.write(s);
  const writeErr = (s: string): void => void io.stderr.write(s);

  /** Every command shares these settings; subcommands inherit them when created from here. */
  const configure = (command: Command): Command =>
    command
      .configureOutput({
        writeOut,
        writeErr,
        outputError: (text, write) => write(text.endsWith('\n') ? text : text + '\n'),
      })
      .exitOverride()
      .showSuggestionAfterError(true)
      .showHelpAfterError('(run with --help for usage)');

  configure(program)
    .description('Run .cycleswap/ and Computalot projects locally in Docker and on a Computalot-style backend.')
    .version(cycleVersion(), '-v, --version', 'print the version')
    .option('-q, --quiet', 'print only data and errors (no progress)')
    .option('--debug', 'print debug traces (Docker commands, HTTP requests, stack traces)')
    .option('--no-color', 'no colours (also: NO_COLOR, CI, or output not a terminal)')
    .helpCommand(false)
    .addHelpText('after', '\nExamples:\n  $ cycle project init --template python\n  $ cycle project test\n  $ cycle help exit-codes');

  /** Runs a lazily imported command module with a context built for this process. */
  const run = async <O>(load: () => Promise<CommandModule<O>>, commandOptions: O, command: Command): Promise<void> => {
    const globals = command.optsWithGlobals() as { quiet?: boolean; debug?: boolean; color?: boolean; json?: boolean };
    const global: GlobalOptions = { json: globals.json === true, quiet: globals.quiet === true, debug: globals.debug === true, color: globals.color !== false };
    state.debug = global.debug;
    const controller = new AbortController();
    let interrupts = 0;
    let signalName: NodeJS.Signals = 'SIGINT';
    const onSigint = (signal: NodeJS.Signals): void => {
      signalName = signal;
      interrupts++;
      if (interrupts === 1) {
        io.stderr.write(`\n${signalName === 'SIGTERM' ? 'terminating' : 'interrupting'}: stopping and cleaning up (press Ctrl-C again to force)\n`);
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
      const [module, ctx] = await Promise.all([
        load(),
        options.contextFactory
          ? options.contextFactory(global, controller.signal)
          : import('./context.js').then(async ({ createContext, colorEnabled }) => {
              const palette = colorEnabled(io.stderr, env, global.color) ? await import('./ui/ui.js').then((m) => m.chalkPalette()) : undefined;
              return createContext({ io, env, cwd: options.cwd ?? process.cwd(), global, version: cycleVersion(), signal: controller.signal, palette });
            }),
      ]);
      const code = await module.run(commandOptions, ctx);
      state.exitCode = code ?? ExitCode.ok;
    } catch (error) {
      if (controller.signal.aborted && !(isCycleError(error) && error.exitCode === ExitCode.interrupted)) {
        // The command failed because it was interrupted: say so, with the interrupted code.
        throw new CycleError({ message: 'interrupted', exitCode: ExitCode.interrupted, cause: error });
      }
      throw error;
    } finally {
      if (handleSignals) {
        process.off('SIGINT', onSigint);
        process.off('SIGTERM', onSigint);
      }
    }
  };

  const json = (command: Command): Command => command.option('--json', 'print JSON on stdout instead of text');

  // ---- project ----
  const project = configure(program.command('project')).description('create, check, build, run and ship a project');
  project.addHelpText('after', '\nExamples:\n  $ cycle project init my-exp --template python\n  $ cycle project validate\n  $ cycle project test');

  configure(project.command('init'))
    .description('create a project: .cycleswap/ (default) or computalot.project.json + Dockerfile')
    .argument('[dir]', 'folder to create the project in', '.')
    .addOption(new Option('--format <format>', 'project format').choices(['cycleswap', 'computalot']))
    .addOption(new Option('--template <template>', 'starting point').choices(['python', 'shell']))
    .option('--name <name>', 'project name (default: from the folder name)')
    .option('--force', 'replace an existing project (the old files are backed up under .cycle/backups/)')
    .addHelpText('after', '\nExamples:\n  $ cycle project init\n  $ cycle project init my-exp --template shell --name my-exp\n  $ cycle project init api --format computalot')
    .action(async (dir: string, opts: { format?: 'cycleswap' | 'computalot'; template?: 'python' | 'shell'; name?: string; force?: boolean }, command: Command) =>
      run(() => import('./commands/project/init.js'), { dir, ...opts, force: opts.force === true }, command),
    );

  json(configure(project.command('validate')))
    .description('check the project files and list every problem with file:line:column')
    .addHelpText('after', '\nExit status 3 when the project is invalid.\n\nExamples:\n  $ cycle project validate\n  $ cycle project validate --json | jq .diagnostics')
    .action(async (opts: { json?: boolean }, command: Command) => run(() => import('./commands/project/validate.js'), { json: opts.json === true }, command));

  json(configure(project.command('hash')))
    .description('print the build hash (what decides whether the image is rebuilt)')
    .option('--explain', 'list what changed since the last build')
    .addHelpText('after', '\nThe encoding is documented in docs/build-hash.md.\n\nExamples:\n  $ cycle project hash\n  $ cycle project hash --explain')
    .action(async (opts: { json?: boolean; explain?: boolean }, command: Command) =>
      run(() => import('./commands/project/hash.js'), { json: opts.json === true, explain: opts.explain === true }, command),
    );

  json(configure(project.command('test')))
    .description('build and run the project locally in Docker, exactly as a remote worker would')
    .option('--rebuild', 're-run build.sh on top of the previous build image, even if nothing changed')
    .option('--clean', 'build from the bare base image')
    .option('--volume <NAME=PATH>', 'host folder for a manifest volume, mounted at /volumes/NAME (repeatable; default .cycle/volumes/NAME)', collect, [])
    .option('--payload <JSON|@file|->', 'the task payload (runner protocol): JSON, @file, or - for stdin')
    .addHelpText(
      'after',
      '\nExit status: 0 when the job succeeds, 6 when it fails (its own exit code is shown), 130 on Ctrl-C.\nArtifacts (files under /outputs) are copied to .cycle/runs/<run>/outputs.\n\nExamples:\n  $ cycle project test\n  $ cycle project test --rebuild\n  $ cycle project test --volume training-data=/data/train\n  $ cycle project test --payload \'{"steps": 3}\' --json',
    )
    .action(async (opts: { json?: boolean; rebuild?: boolean; clean?: boolean; volume: string[]; payload?: string }, command: Command) =>
      run(
        () => import('./commands/project/test.js'),
        { json: opts.json === true, rebuild: opts.rebuild === true, clean: opts.clean === true, volume: opts.volume, ...(opts.payload !== undefined ? { payload: opts.payload } : {}) },
        command,
      ),
    );

  const api = (command: Command): Command => command.option('--api-url <url>', 'the server (default: CYCLE_API_URL, then the config)');

  json(configure(project.command('pack')))
    .description('write the deterministic .tar.gz an upload would send, or list what goes in')
    .option('--out <file>', 'where to write it (default: <project>.tar.gz here)')
    .option('--list', 'only list the files that would go in')
    .addHelpText(
      'after',
      '\nWhat goes in: every file, minus what .gitignore files (nested too) and .cycleignore leave out, minus .git/,\n.cycle/ and secret-looking files (.env*, *.pem, id_rsa*, .netrc, cloud credentials; "!name" in .cycleignore\nships one on purpose). The same tree gives the same bytes; the content hash is their sha256.\n\nExamples:\n  $ cycle project pack --list\n  $ cycle project pack --out /tmp/p.tar.gz --json',
    )
    .action(async (opts: { out?: string; list?: boolean; json?: boolean }, command: Command) =>
      run(() => import('./commands/project/pack.js'), { ...(opts.out ? { out: opts.out } : {}), list: opts.list === true, json: opts.json === true }, command),
    );

  json(api(configure(project.command('upload'))))
    .description('validate, pack and push the project to the backend (skipped when nothing changed)')
    .option('--rebuild', 'have the backend re-run build.sh on its previous build image')
    .option('--clean', 'have the backend build from the bare base image')
    .option('--force', 'upload even when the content hash is unchanged')
    .option('--project <name>', 'upload under this name (default: the manifest\'s)')
    .addHelpText('after', '\nExamples:\n  $ cycle project upload\n  $ cycle project upload --rebuild\n  $ cycle project upload --json | jq .revision')
    .action(async (opts: { json?: boolean; rebuild?: boolean; clean?: boolean; force?: boolean; project?: string; apiUrl?: string }, command: Command) =>
      run(
        () => import('./commands/project/upload.js'),
        { json: opts.json === true, rebuild: opts.rebuild === true, clean: opts.clean === true, force: opts.force === true, ...(opts.project ? { project: opts.project } : {}), ...(opts.apiUrl ? { apiUrl: opts.apiUrl } : {}) },
        command,
      ),
    );

  const remote = (command: Command): Command => json(api(configure(command))).option('--project <name>', 'the project (default: $CYCLE_PROJECT, then the manifest\'s name)');
  remote(project.command('prepare'))
    .description("prepare the uploaded project on the backend ahead of jobs (the API's init; optional)")
    .addHelpText('after', '\nNeeds at least $5 of balance on hosted backends (402 otherwise).\n\nExamples:\n  $ cycle project prepare\n  $ cycle project prepare && cycle project status --watch')
    .action(async (opts: { json?: boolean; project?: string; apiUrl?: string }, command: Command) =>
      run(() => import('./commands/project/remote.js').then((m) => ({ run: m.prepare })), remoteOptions(opts), command),
    );
  remote(project.command('status'))
    .description('is the uploaded project published and ready for jobs?')
    .option('--details', 'per-node readiness')
    .option('--watch', 'follow until the build is ready or failed (exit 6 when it failed)')
    .addHelpText('after', '\nExamples:\n  $ cycle project status\n  $ cycle project status --details --json\n  $ cycle project status --watch')
    .action(async (opts: { json?: boolean; project?: string; apiUrl?: string; details?: boolean; watch?: boolean }, command: Command) =>
      run(() => import('./commands/project/remote.js').then((m) => ({ run: m.status })), { ...remoteOptions(opts), details: opts.details === true, watch: opts.watch === true }, command),
    );
  remote(project.command('invalidate'))
    .description('drop the prepared images on the backend (the next job builds again)')
    .addHelpText('after', '\nExamples:\n  $ cycle project invalidate')
    .action(async (opts: { json?: boolean; project?: string; apiUrl?: string }, command: Command) =>
      run(() => import('./commands/project/remote.js').then((m) => ({ run: m.invalidate })), remoteOptions(opts), command),
    );

  // ---- auth ----
  const auth = configure(program.command('auth')).description('log in to a backend, check, log out');
  api(configure(auth.command('login')))
    .description('save a token for the server (asked without echo, or read from stdin)')
    .option('--with-token', 'read the token from stdin')
    .addHelpText('after', '\nThe token is checked against the server, then saved (mode 0600) in $XDG_CONFIG_HOME/cycle/credentials.json.\n\nExamples:\n  $ cycle auth login --api-url http://127.0.0.1:8787\n  $ cycle auth login --api-url http://127.0.0.1:8787 --with-token < ~/.local/share/cycle/server/token')
    .action(async (opts: { apiUrl?: string; withToken?: boolean }, command: Command) =>
      run(() => import('./commands/auth.js').then((m) => ({ run: m.login })), { ...(opts.apiUrl ? { apiUrl: opts.apiUrl } : {}), withToken: opts.withToken === true }, command),
    );
  json(api(configure(auth.command('status'))))
    .description('which server, where the token comes from, and whether the server accepts it (never the token)')
    .addHelpText('after', '\nExit status 4 when there is no token or the server refuses it.\n\nExamples:\n  $ cycle auth status\n  $ cycle auth status --json')
    .action(async (opts: { apiUrl?: string; json?: boolean }, command: Command) =>
      run(() => import('./commands/auth.js').then((m) => ({ run: m.status })), { json: opts.json === true, ...(opts.apiUrl ? { apiUrl: opts.apiUrl } : {}) }, command),
    );
  api(configure(auth.command('logout')))
    .description('forget the saved token of the server')
    .addHelpText('after', '\nExamples:\n  $ cycle auth logout')
    .action(async (opts: { apiUrl?: string }, command: Command) =>
      run(() => import('./commands/auth.js').then((m) => ({ run: m.logout })), { ...(opts.apiUrl ? { apiUrl: opts.apiUrl } : {}) }, command),
    );

  // ---- server ----
  configure(program.command('server'))
    .description('run a local Computalot-compatible backend that runs jobs in Docker')
    .option('--port <port>', 'port to listen on (0: any free port)', '8787')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--data-dir <dir>', 'where state, tarballs and artifacts live (default $XDG_DATA_HOME/cycle/server)')
    .option('--workers <n>', 'tasks run at the same time (default: up to 4, one per CPU)')
    .option('--balance <dollars>', 'pretend account balance for `init`, which needs $5 (default: unlimited)')
    .addHelpText(
      'after',
      '\nThe first start creates a bearer token (shown once, kept in <data-dir>/token). State is in SQLite:\na restart, even after kill -9, loses no accepted job. See docs/api.md for the routes.\n\nExamples:\n  $ cycle server\n  $ cycle server --port 9000 --workers 8 --data-dir /srv/cycle',
    )
    .action(async (opts: { port: string; host: string; dataDir?: string; workers?: string; balance?: string }, command: Command) =>
      run(() => import('./commands/server.js'), opts, command),
    );

  // ---- doctor, completion, help ----
  json(configure(program.command('doctor')))
    .description('check Node, Docker, the NVIDIA driver and the API settings')
    .addHelpText('after', '\nExamples:\n  $ cycle doctor\n  $ cycle doctor --json')
    .action(async (opts: { json?: boolean }, command: Command) => run(() => import('./commands/doctor.js'), { json: opts.json === true }, command));

  configure(program.command('completion'))
    .description('print a shell completion script')
    .addArgument(new Argument('<shell>', 'bash, zsh or fish').choices(['bash', 'zsh', 'fish']))
    .addHelpText('after', '\nExamples:\n  $ cycle completion bash > ~/.local/share/bash-completion/completions/cycle\n  $ cycle completion zsh > "${fpath[1]}/_cycle"\n  $ cycle completion fish > ~/.config/fish/completions/cycle.fish')
    .action(async (shell: 'bash' | 'zsh' | 'fish') => {
      const { completionScript } = await import('./commands/completion.js');
      io.stdout.write(completionScript(shell, program));
    });

  configure(program.command('help'))
    .description('show help for a command, or a topic: exit-codes')
    .argument('[topic...]', 'a command path (e.g. "project test") or "exit-codes"')
    .addHelpText('after', '\nExamples:\n  $ cycle help project init\n  $ cycle help exit-codes')
    .action(async (topic: string[]) => {
      if (topic.length === 1 && topic[0] === 'exit-codes') {
        io.stdout.write(formatExitCodes());
        return;
      }
      let target: Command = program;
      for (const word of topic) {
        const next = target.commands.find((c) => c.name() === word || c.aliases().includes(word));
        if (!next) throw new CycleError({ message: `no help topic "${topic.join(' ')}"`, hint: 'run `cycle --help` for the commands, or `cycle help exit-codes`', exitCode: ExitCode.usage });
        target = next;
      }
      target.outputHelp();
    });

  return program;
}

function remoteOptions(opts: { json?: boolean; project?: string; apiUrl?: string }): { json: boolean; project?: string; apiUrl?: string } {
  return { json: opts.json === true, ...(opts.project ? { project: opts.project } : {}), ...(opts.apiUrl ? { apiUrl: opts.apiUrl } : {}) };
}

/** For repeatable options: `--volume a=1 --volume b=2`. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function formatExitCodes(): string {
  const lines = ['Exit codes of cycle:', ''];
  for (const row of exitCodeTable) lines.push(`  ${String(row.code).padStart(3)}  ${row.name.padEnd(16)} ${row.meaning}`);
  return lines.join('\n') + '\n';
}
