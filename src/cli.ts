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
    const globals = command.optsWithGlobals() as { quiet?: boolean; debug?: boolean; color?: boolean };
    const global: GlobalOptions = { quiet: globals.quiet === true, debug: globals.debug === true, color: globals.color !== false };
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
    .option('--skip-limits', "run without the platforms' limits (memory 90% of RAM, 4096 processes)")
    .addHelpText(
      'after',
      '\nExit status: 0 when the job succeeds, 6 when it fails (its own exit code is shown; also when it runs out of memory), 130 on Ctrl-C.\nArtifacts (files under /outputs) are copied to .cycle/runs/<run>/outputs.\n\nExamples:\n  $ cycle project test\n  $ cycle project test --rebuild\n  $ cycle project test --volume training-data=/data/train\n  $ cycle project test --payload \'{"steps": 3}\' --json',
    )
    .action(async (opts: { json?: boolean; rebuild?: boolean; clean?: boolean; volume: string[]; payload?: string; skipLimits?: boolean }, command: Command) =>
      run(
        () => import('./commands/project/test.js'),
        { json: opts.json === true, rebuild: opts.rebuild === true, clean: opts.clean === true, volume: opts.volume, skipLimits: opts.skipLimits === true, ...(opts.payload !== undefined ? { payload: opts.payload } : {}) },
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

  // ---- job ----
  const job = configure(program.command('job')).description('submit jobs and follow them: from the shell and from scripts');
  job.addHelpText('after', '\nExamples:\n  $ id=$(cycle job submit --payload \'{"n": [1,2,3]}\' --fan-out-by n)\n  $ cycle job watch "$id"\n  $ cycle job results "$id" --json | jq .items');
  const jobRead = (command: Command): Command => json(api(configure(command)));
  jobRead(job.command('submit'))
    .description('submit a job; prints its id (not on a terminal: only the id)')
    .option('--project <name>', 'the project (default: $CYCLE_PROJECT, then the manifest\'s name)')
    .addOption(new Option('--type <type>', 'job type').choices(['structured_runner', 'sweep', 'map_reduce', 'benchmark']))
    .option('--runner <command>', 'the command each task runs, e.g. "python3 eval.py" (default: .cycleswap/run.sh or the entrypoint)')
    .option('--runner-json <json>', 'the command as a JSON array, e.g. \'["python3","eval.py"]\'')
    .option('--reduce <command>', 'map_reduce: the reduce command')
    .option('--reduce-json <json>', 'map_reduce: the reduce command as a JSON array')
    .option('--payload <JSON|@file|->', 'the payload (a JSON object)')
    .option('--fan-out-by <field>', 'one task per element of the payload\'s array FIELD')
    .option('--fan-out-items <@file|->', 'one task per item: JSON lines, or a JSON array')
    .option('--chunks <n>', 'split a range in N chunks (with --range-field and --total)')
    .option('--range-field <field>', 'the payload field that gets each chunk\'s {start, end}')
    .option('--total <n>', 'the size of the range')
    .option('--batch-size <n>', 'items per task (the task gets payload._batch)')
    .option('--profile <profile>', 'e.g. gpu')
    .option('--timeout <duration>', 'per task: seconds, or 90s, 10m, 1h30m')
    .option('--require <list>', 'minimum requirements, e.g. gpu=1,storage_gb=40')
    .option('--tag <tag>', 'a tag (repeatable)', collect, [])
    .option('--meta <key=value>', 'metadata (repeatable; JSON values kept as JSON)', collect, [])
    .option('--variant <name>', 'a variant label')
    .option('--depends-on <job>', 'wait for this job to complete first (repeatable)', collect, [])
    .option('--callback-url <url>', 'POSTed the job when it finishes')
    .option('--client-ref <ref>', 'your own reference, returned with the job')
    .option('--idempotency-key <key>', 'resubmitting with the same key returns the first job instead of a new one')
    .option('--wait', 'follow the job to its end (exit 0 completed, 6 failed or partial)')
    .option('--cancel-on-interrupt', 'with --wait: Ctrl-C cancels the job (otherwise it goes on)')
    .addHelpText(
      'after',
      '\nExamples:\n  $ cycle job submit --runner "python3 eval.py" --payload \'{"model": "m1"}\'\n  $ cycle job submit --payload \'{"models": ["a","b","c"]}\' --fan-out-by models --wait\n  $ cycle job submit --fan-out-items @items.jsonl --batch-size 50 --tag exp42\n  $ cycle job submit --chunks 20 --range-field seeds --total 10000 --timeout 10m',
    )
    .action(async (opts: Record<string, unknown>, command: Command) =>
      run(() => import('./commands/job/submit.js'), { ...(opts as object), tag: opts.tag as string[], meta: opts.meta as string[], dependsOn: opts.dependsOn as string[], wait: opts.wait === true, cancelOnInterrupt: opts.cancelOnInterrupt === true, json: opts.json === true } as import('./commands/job/submit.js').SubmitOptions, command),
    );
  jobRead(job.command('batch'))
    .description('submit many jobs from a JSON-lines file (or - for stdin), 200 per request')
    .argument('<file>', 'one job per line (the body of POST /api/v1/jobs)')
    .option('--project <name>', 'the project for lines that name none')
    .addHelpText('after', '\nEvery line is checked before anything is sent; a bad line is named by its number.\n\nExamples:\n  $ cycle job batch jobs.jsonl\n  $ generate-jobs | cycle job batch - --json')
    .action(async (file: string, opts: { apiUrl?: string; project?: string; json?: boolean }, command: Command) =>
      run(() => import('./commands/job/batch.js'), { file, json: opts.json === true, ...(opts.apiUrl ? { apiUrl: opts.apiUrl } : {}), ...(opts.project ? { project: opts.project } : {}) }, command),
    );
  jobRead(job.command('list'))
    .description('list jobs, newest first')
    .option('--tag <tag>', 'only jobs with this tag')
    .option('--status <status>', 'only jobs in this state')
    .option('--project <name>', 'only jobs of this project')
    .option('--limit <n>', 'at most N jobs (default 20)')
    .addHelpText('after', '\nExamples:\n  $ cycle job list --tag exp42\n  $ cycle job list --status failed --json | jq -r ".[].id"')
    .action(async (opts: { apiUrl?: string; json?: boolean; tag?: string; status?: string; project?: string; limit?: string }, command: Command) =>
      run(() => import('./commands/job/read.js').then((m) => ({ run: m.list })), { ...opts, json: opts.json === true }, command),
    );
  const byId = (name: string, description: string, example: string, load: () => Promise<CommandModule<{ id: string; json: boolean; apiUrl?: string }>>) =>
    jobRead(job.command(name))
      .description(description)
      .argument('<id>', 'the job id')
      .addHelpText('after', `\nExamples:\n  $ ${example}`)
      .action(async (id: string, opts: { apiUrl?: string; json?: boolean }, command: Command) => run(load, { id, json: opts.json === true, ...(opts.apiUrl ? { apiUrl: opts.apiUrl } : {}) }, command));
  byId('get', 'show a job', 'cycle job get job_123', () => import('./commands/job/read.js').then((m) => ({ run: m.get })));
  byId('tasks', "a job's tasks: status, attempts, exit codes, errors", 'cycle job tasks job_123', () => import('./commands/job/read.js').then((m) => ({ run: m.tasks })));
  byId('results', "a job's results: one line per item (--json: the whole document)", 'cycle job results job_123 --json | jq ".items[].result"', () => import('./commands/job/read.js').then((m) => ({ run: m.results })));
  jobRead(job.command('logs'))
    .description("a job's output (stdout and stderr of its tasks)")
    .argument('<id>', 'the job id')
    .option('--follow', 'stream it live until the job ends')
    .option('--task <n>', 'only task N (its index)')
    .addHelpText('after', '\nExamples:\n  $ cycle job logs job_123\n  $ cycle job logs job_123 --follow --task 3')
    .action(async (id: string, opts: { apiUrl?: string; json?: boolean; follow?: boolean; task?: string }, command: Command) =>
      run(() => import('./commands/job/read.js').then((m) => ({ run: m.logs })), { id, json: opts.json === true, follow: opts.follow === true, ...(opts.task !== undefined ? { task: opts.task } : {}), ...(opts.apiUrl ? { apiUrl: opts.apiUrl } : {}) }, command),
    );
  jobRead(job.command('watch'))
    .description('follow jobs live until they end (exit 0 when all completed, 6 otherwise)')
    .argument('<ids...>', 'job ids')
    .addHelpText('after', '\n--json prints each event as a JSON line.\n\nExamples:\n  $ cycle job watch job_1 job_2\n  $ cycle job watch job_1 --json | jq -c "select(.type == \\"task\\")"')
    .action(async (ids: string[], opts: { apiUrl?: string; json?: boolean }, command: Command) =>
      run(() => import('./commands/job/read.js').then((m) => ({ run: m.watch })), { ids, json: opts.json === true, ...(opts.apiUrl ? { apiUrl: opts.apiUrl } : {}) }, command),
    );
  jobRead(job.command('cancel'))
    .description('cancel jobs (running containers are stopped)')
    .argument('<ids...>', 'job ids')
    .addHelpText('after', '\nExamples:\n  $ cycle job cancel job_123')
    .action(async (ids: string[], opts: { apiUrl?: string; json?: boolean }, command: Command) =>
      run(() => import('./commands/job/read.js').then((m) => ({ run: m.cancel })), { ids, json: opts.json === true, ...(opts.apiUrl ? { apiUrl: opts.apiUrl } : {}) }, command),
    );

  // ---- artifacts ----
  const artifacts = configure(program.command('artifacts')).description("list and download jobs' output files");
  jobRead(artifacts.command('list'))
    .description('list artifacts (newest first, or of one job)')
    .option('--job <id>', 'only this job\'s artifacts')
    .addHelpText('after', '\nExamples:\n  $ cycle artifacts list --job job_123')
    .action(async (opts: { apiUrl?: string; json?: boolean; job?: string }, command: Command) =>
      run(() => import('./commands/artifacts.js').then((m) => ({ run: m.list })), { ...opts, json: opts.json === true }, command),
    );
  jobRead(artifacts.command('download'))
    .description('download artifacts: verified, resumable, written atomically inside --out')
    .argument('[ids...]', 'artifact ids')
    .option('--job <id>', 'all of a job\'s artifacts')
    .option('--out <dir>', 'the folder to write to (default: here)')
    .addHelpText('after', '\nExamples:\n  $ cycle artifacts download --job job_123 --out results/\n  $ cycle artifacts download art_1 art_2')
    .action(async (ids: string[], opts: { apiUrl?: string; json?: boolean; job?: string; out?: string }, command: Command) =>
      run(() => import('./commands/artifacts.js').then((m) => ({ run: m.download })), { ids, ...opts, json: opts.json === true }, command),
    );

  // ---- kv ----
  const kv = configure(program.command('kv')).description("a project's small shared JSON values");
  jobRead(kv.command('get'))
    .description('print a value as JSON')
    .argument('<project>', 'the project')
    .argument('<key>', 'the key')
    .addHelpText('after', '\nExamples:\n  $ cycle kv get my-exp best_lr')
    .action(async (projectName: string, key: string, opts: { apiUrl?: string; json?: boolean }, command: Command) =>
      run(() => import('./commands/kv.js').then((m) => ({ run: m.get })), { project: projectName, key, json: opts.json === true, ...(opts.apiUrl ? { apiUrl: opts.apiUrl } : {}) }, command),
    );
  jobRead(kv.command('set'))
    .description('set a value: JSON, @file, or - for stdin')
    .argument('<project>', 'the project')
    .argument('<key>', 'the key')
    .argument('<value>', 'JSON (a string needs quotes), @file, or -')
    .addHelpText('after', '\nExamples:\n  $ cycle kv set my-exp best_lr 0.003\n  $ cycle kv set my-exp config @config.json')
    .action(async (projectName: string, key: string, value: string, opts: { apiUrl?: string; json?: boolean }, command: Command) =>
      run(() => import('./commands/kv.js').then((m) => ({ run: m.set })), { project: projectName, key, value, json: opts.json === true, ...(opts.apiUrl ? { apiUrl: opts.apiUrl } : {}) }, command),
    );
  jobRead(kv.command('list'))
    .description("list a project's keys and values")
    .argument('<project>', 'the project')
    .addHelpText('after', '\nExamples:\n  $ cycle kv list my-exp')
    .action(async (projectName: string, opts: { apiUrl?: string; json?: boolean }, command: Command) =>
      run(() => import('./commands/kv.js').then((m) => ({ run: m.list })), { project: projectName, json: opts.json === true, ...(opts.apiUrl ? { apiUrl: opts.apiUrl } : {}) }, command),
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
