import fs from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { loadCommands, main } from '../../src/cli.js';
import type { Invocation } from '../../src/program.js';
import type { CommandDeclaration, Declaration, OptionsOf } from '../../src/commands/declaration.js';
import { init } from '../../src/commands/project/init.command.js';
import { validate } from '../../src/commands/project/validate.command.js';
import { hash } from '../../src/commands/project/hash.command.js';
import { test as projectTest } from '../../src/commands/project/test.command.js';
import { pack } from '../../src/commands/project/pack.command.js';
import { upload } from '../../src/commands/project/upload.command.js';
import * as remote from '../../src/commands/project/remote.command.js';
import * as auth from '../../src/commands/auth.command.js';
import { submit, queue } from '../../src/commands/job/submit.command.js';
import { pull } from '../../src/commands/job/pull.command.js';
import * as volume from '../../src/commands/volume.command.js';
import { batch } from '../../src/commands/job/batch.command.js';
import * as jobRead from '../../src/commands/job/read.command.js';
import * as artifacts from '../../src/commands/artifacts.command.js';
import * as kv from '../../src/commands/kv.command.js';
import * as machine from '../../src/commands/machine.command.js';
import * as recipe from '../../src/commands/recipe.command.js';
import * as account from '../../src/commands/account.command.js';
import { create as projectCreate } from '../../src/commands/project/create.command.js';
import { server } from '../../src/commands/server.command.js';
import { serverGc } from '../../src/commands/server-gc.command.js';
import { run as daemonRun } from '../../src/commands/daemon/run.command.js';
import { dashboard } from '../../src/commands/dashboard.command.js';
import { doctor } from '../../src/commands/doctor.command.js';
import { completion } from '../../src/commands/completion.command.js';
import { help } from '../../src/commands/help.command.js';
import { status as daemonStatus } from '../../src/commands/daemon/status.command.js';
import { pause as daemonPause, resume as daemonResume } from '../../src/commands/daemon/pause.command.js';
import * as busyAssign from '../../src/commands/daemon/busy-assign.command.js';
import { unit as daemonUnit } from '../../src/commands/daemon/unit.command.js';
import { JOB_TYPES } from '../../src/api/schemas.js';
import { Capture } from '../helpers/context.js';

/** Parses a command line as the binary does, capturing what would run instead of running it (gh's runF). */
async function parse(args: string[]): Promise<{ code: number; invocation: Invocation | undefined; stderr: string }> {
  const stderr = new Capture();
  let invocation: Invocation | undefined;
  const code = await main(['node', 'cycle', ...args], {
    io: { stdout: new Capture(), stderr, stdin: new PassThrough() },
    env: {},
    cwd: '/nonexistent',
    handleSignals: false,
    runF: async (captured) => {
      invocation = captured;
    },
  });
  return { code, invocation, stderr: stderr.text };
}

interface Row {
  argv: string[];
  command: CommandDeclaration;
  options: unknown;
}

/** A table row; its expected options are type-checked against the command's own options type. */
function row<C extends CommandDeclaration>(command: C, argv: string[], options: OptionsOf<C>): Row {
  return { argv, command, options };
}

const rows: Row[] = [
  row(init, ['project', 'init'], { dir: '.', force: false }),
  row(init, ['project', 'init', 'my-exp', '--format', 'computalot', '--template', 'shell', '--name', 'exp', '--force'], {
    dir: 'my-exp',
    format: 'computalot',
    template: 'shell',
    name: 'exp',
    force: true,
  }),
  row(validate, ['project', 'validate'], { json: false }),
  row(validate, ['project', 'validate', '--json'], { json: true }),
  row(hash, ['project', 'hash', '--explain', '--json'], { json: true, explain: true }),
  row(projectTest, ['project', 'test'], { json: false, rebuild: false, clean: false, volume: [], skipLimits: false }),
  row(projectTest, ['project', 'test', '--skip-limits'], { json: false, rebuild: false, clean: false, volume: [], skipLimits: true }),
  row(projectTest, ['project', 'test', '--rebuild', '--clean', '--volume', 'a=/x', '--volume', 'b=/y', '--payload', '{"steps": 3}', '--json'], {
    json: true,
    rebuild: true,
    clean: true,
    volume: ['a=/x', 'b=/y'],
    payload: '{"steps": 3}',
    skipLimits: false,
  }),
  row(projectTest, ['project', 'test', '--payload', ''], { json: false, rebuild: false, clean: false, volume: [], payload: '', skipLimits: false }),
  row(projectTest, ['project', 'test', '--resume'], { json: false, rebuild: false, clean: false, volume: [], resume: 'latest', skipLimits: false }),
  row(projectTest, ['project', 'test', '--resume', '20260102-030405-abcd', '--json'], {
    json: true,
    rebuild: false,
    clean: false,
    volume: [],
    resume: '20260102-030405-abcd',
    skipLimits: false,
  }),
  row(pack, ['project', 'pack', '--out', 'p.tar.gz', '--list', '--json'], { json: true, out: 'p.tar.gz', list: true }),
  row(pack, ['project', 'pack', '--out', ''], { json: false, list: false }),
  row(upload, ['project', 'upload'], { json: false, rebuild: false, clean: false, force: false }),
  row(upload, ['project', 'upload', '--api-url', 'http://h:1', '--rebuild', '--clean', '--force', '--project', 'other', '--json'], {
    apiUrl: 'http://h:1',
    json: true,
    rebuild: true,
    clean: true,
    force: true,
    project: 'other',
  }),
  row(upload, ['project', 'upload', '--project', '', '--api-url', ''], { json: false, rebuild: false, clean: false, force: false }),
  row(remote.prepare, ['project', 'prepare', '--project', 'demo'], { json: false, project: 'demo' }),
  row(remote.status, ['project', 'status', '--details', '--watch', '--json', '--api-url', 'http://h:1'], {
    json: true,
    details: true,
    watch: true,
    apiUrl: 'http://h:1',
  }),
  row(remote.invalidate, ['project', 'invalidate'], { json: false }),
  row(auth.login, ['auth', 'login', '--api-url', 'http://h:1', '--with-token'], { apiUrl: 'http://h:1', withToken: true }),
  row(auth.status, ['auth', 'status', '--json'], { json: true }),
  row(auth.logout, ['auth', 'logout'], {}),
  row(submit, ['job', 'submit'], { json: false, tag: [], meta: [], dependsOn: [], wait: false, cancelOnInterrupt: false }),
  row(
    submit,
    [
      'job',
      'submit',
      '--api-url',
      'http://h:1',
      '--json',
      '--project',
      'demo',
      '--type',
      'map_reduce',
      '--runner',
      'python3 map.py',
      '--runner-json',
      '["python3","map.py"]',
      '--reduce',
      'python3 reduce.py',
      '--reduce-json',
      '["python3","reduce.py"]',
      '--payload',
      '@p.json',
      '--fan-out-by',
      'models',
      '--fan-out-items',
      '-',
      '--chunks',
      '4',
      '--range-field',
      'seeds',
      '--total',
      '100',
      '--batch-size',
      '5',
      '--profile',
      'gpu',
      '--timeout',
      '10m',
      '--require',
      'gpu=1',
      '--tag',
      'a',
      '--tag',
      'b',
      '--meta',
      'lr=0.1',
      '--variant',
      'v2',
      '--depends-on',
      'job_1',
      '--depends-on',
      'job_2',
      '--callback-url',
      'http://cb',
      '--client-ref',
      'ref-1',
      '--idempotency-key',
      'key-1',
      '--wait',
      '--cancel-on-interrupt',
    ],
    {
      apiUrl: 'http://h:1',
      json: true,
      project: 'demo',
      type: 'map_reduce',
      runner: 'python3 map.py',
      runnerJson: '["python3","map.py"]',
      reduce: 'python3 reduce.py',
      reduceJson: '["python3","reduce.py"]',
      payload: '@p.json',
      fanOutBy: 'models',
      fanOutItems: '-',
      chunks: '4',
      rangeField: 'seeds',
      total: '100',
      batchSize: '5',
      profile: 'gpu',
      timeout: '10m',
      require: 'gpu=1',
      tag: ['a', 'b'],
      meta: ['lr=0.1'],
      variant: 'v2',
      dependsOn: ['job_1', 'job_2'],
      callbackUrl: 'http://cb',
      clientRef: 'ref-1',
      idempotencyKey: 'key-1',
      wait: true,
      cancelOnInterrupt: true,
    },
  ),
  row(queue, ['job', 'queue'], { json: false, tag: [], meta: [], dependsOn: [], wait: false, cancelOnInterrupt: false }),
  row(queue, ['job', 'queue', '--payload', '{"epochs": 3}', '--wait', '--project', 'demo'], {
    json: false,
    tag: [],
    meta: [],
    dependsOn: [],
    wait: true,
    cancelOnInterrupt: false,
    payload: '{"epochs": 3}',
    project: 'demo',
  }),
  row(jobRead.tail, ['job', 'tail', 'job_1'], { id: 'job_1', json: false }),
  row(jobRead.tail, ['job', 'tail', 'job_1', '--task', '2', '--json'], { id: 'job_1', json: true, task: '2' }),
  row(pull, ['job', 'pull', 'job_1'], { id: 'job_1', json: false, overwrite: false }),
  row(pull, ['job', 'pull', 'job_1', '--out', 'results/', '--json', '--api-url', 'http://h:1'], {
    id: 'job_1',
    json: true,
    out: 'results/',
    apiUrl: 'http://h:1',
    overwrite: false,
  }),
  row(volume.upload, ['volume', 'upload', './data'], { dir: './data', json: false }),
  row(volume.upload, ['volume', 'upload', './data', '--name', 'training-data', '--json'], { dir: './data', name: 'training-data', json: true }),
  row(volume.list, ['volume', 'list', '--json'], { json: true }),
  row(volume.rm, ['volume', 'rm', 'training-data'], { name: 'training-data', json: false }),
  row(batch, ['job', 'batch', '-', '--project', 'demo', '--json'], { file: '-', project: 'demo', json: true }),
  row(jobRead.list, ['job', 'list'], { json: false }),
  row(jobRead.list, ['job', 'list', '--tag', 'exp', '--status', 'failed', '--project', 'demo', '--limit', '5'], {
    json: false,
    tag: 'exp',
    status: 'failed',
    project: 'demo',
    limit: '5',
  }),
  row(jobRead.get, ['job', 'get', 'job_1'], { id: 'job_1', json: false }),
  row(jobRead.tasks, ['job', 'tasks', 'job_1', '--json'], { id: 'job_1', json: true, timings: false }),
  row(jobRead.tasks, ['job', 'tasks', 'job_1', '--timings'], { id: 'job_1', json: false, timings: true }),
  row(jobRead.results, ['job', 'results', 'job_1'], { id: 'job_1', json: false }),
  row(jobRead.logs, ['job', 'logs', '--follow', 'job_1', '--task', '3'], { id: 'job_1', json: false, follow: true, task: '3' }),
  row(jobRead.watch, ['job', 'watch', 'job_1', 'job_2', '--json'], { ids: ['job_1', 'job_2'], json: true }),
  row(jobRead.cancel, ['job', 'cancel', 'job_1'], { ids: ['job_1'], json: false }),
  row(artifacts.list, ['artifacts', 'list', '--job', 'job_1'], { json: false, job: 'job_1' }),
  row(artifacts.download, ['artifacts', 'download'], { ids: [], json: false, overwrite: false }),
  row(artifacts.download, ['artifacts', 'download', 'art_1', 'art_2', '--job', 'job_1', '--out', 'results/'], {
    ids: ['art_1', 'art_2'],
    json: false,
    job: 'job_1',
    out: 'results/',
    overwrite: false,
  }),
  row(artifacts.upload, ['artifacts', 'upload', 'a.csv', 'b.bin', '--json'], { files: ['a.csv', 'b.bin'], json: true }),
  row(kv.get, ['kv', 'get', 'demo', 'best_lr'], { project: 'demo', key: 'best_lr', json: false }),
  row(kv.set, ['kv', 'set', 'demo', 'cfg', '@cfg.json', '--json'], { project: 'demo', key: 'cfg', value: '@cfg.json', json: true }),
  row(kv.list, ['kv', 'list', 'demo'], { project: 'demo', json: false }),
  row(machine.tokenCreate, ['machine', 'token', 'create', '--name', 'gpu-a'], { name: 'gpu-a', json: false }),
  row(machine.tokenCreate, ['machine', 'token', 'create', '--json'], { json: true }),
  row(machine.tokenRevoke, ['machine', 'token', 'revoke', 'mtok_1'], { tokenId: 'mtok_1', json: false }),
  row(machine.list, ['machine', 'list', '--api-url', 'http://h:1'], { apiUrl: 'http://h:1', json: false }),
  row(machine.show, ['machine', 'show', 'gpu-a', '--json'], { name: 'gpu-a', json: true }),
  row(machine.drain, ['machine', 'drain', 'gpu-a'], { name: 'gpu-a', json: false }),
  row(machine.undrain, ['machine', 'undrain', 'gpu-a'], { name: 'gpu-a', json: false }),
  row(machine.remove, ['machine', 'remove', 'gpu-a'], { name: 'gpu-a', json: false }),
  row(recipe.list, ['recipe', 'list', '--json'], { json: true }),
  row(recipe.show, ['recipe', 'show', 'simple-amm'], { name: 'simple-amm', json: false }),
  row(recipe.submit, ['recipe', 'submit', 'simple-amm', '--payload', '@p.json', '--timeout', '10m', '--wait'], {
    name: 'simple-amm',
    json: false,
    payload: '@p.json',
    timeout: '10m',
    wait: true,
    cancelOnInterrupt: false,
  }),
  row(account.balance, ['account', 'balance', '--json'], { json: true }),
  row(account.holds, ['account', 'holds'], { json: false }),
  row(account.ledger, ['account', 'ledger'], { json: false }),
  row(projectCreate, ['project', 'create', 'demo', '--remote-dir', '/srv/demo'], { name: 'demo', json: false, remoteDir: '/srv/demo' }),
  row(server, ['server'], { port: '8787', host: '127.0.0.1', localWorker: true }),
  row(dashboard, ['dashboard'], { open: true }),
  row(dashboard, ['dashboard', '--no-open', '--api-url', 'http://gpu-box:8787'], { open: false, apiUrl: 'http://gpu-box:8787' }),
  row(serverGc, ['server-gc'], { keepRevisions: '5', olderThan: '30d', dryRun: false, json: false }),
  row(serverGc, ['server-gc', '--keep-revisions', '3', '--older-than', '7d', '--dry-run', '--json', '--data-dir', '/srv/cycle'], {
    keepRevisions: '3',
    olderThan: '7d',
    dryRun: true,
    json: true,
    dataDir: '/srv/cycle',
  }),
  row(server, ['server', '--port', '9000', '--host', '0.0.0.0', '--data-dir', '/srv/cycle', '--workers', '8', '--balance', '10'], {
    port: '9000',
    host: '0.0.0.0',
    dataDir: '/srv/cycle',
    workers: '8',
    balance: '10',
    localWorker: true,
  }),
  row(server, ['server', '--no-local-worker', '--tls-cert', 'c.pem', '--tls-key', 'k.pem'], {
    port: '8787',
    host: '127.0.0.1',
    localWorker: false,
    tlsCert: 'c.pem',
    tlsKey: 'k.pem',
  }),
  row(daemonRun, ['daemon', 'run', '--api-url', 'https://q:8787', '--name', 'gpu-a'], { apiUrl: 'https://q:8787', name: 'gpu-a', slots: '1', insecure: false }),
  row(daemonRun, ['daemon', 'run', '--api-url', 'http://q:8787', '--name', 'gpu-a', '--slots', '2', '--data-dir', '/d', '--token-file', 't', '--insecure'], {
    apiUrl: 'http://q:8787',
    name: 'gpu-a',
    slots: '2',
    dataDir: '/d',
    tokenFile: 't',
    insecure: true,
  }),
  row(server, ['server', '--recipes', '/srv/recipes'], { port: '8787', host: '127.0.0.1', recipes: '/srv/recipes', localWorker: true }),
  row(server, ['server', '--project-quota', '20g', '--server-quota', '1t', '--max-compression-ratio', '500'], {
    port: '8787',
    host: '127.0.0.1',
    projectQuota: '20g',
    serverQuota: '1t',
    maxCompressionRatio: '500',
    localWorker: true,
  }),
  row(daemonStatus, ['daemon', 'status'], { json: false }),
  row(daemonStatus, ['daemon', 'status', '--json', '--data-dir', '/srv/d'], { json: true, dataDir: '/srv/d' }),
  row(daemonPause, ['daemon', 'pause'], { duration: '8h', json: false }),
  row(daemonPause, ['daemon', 'pause', '2h', '--data-dir', '/srv/d'], { duration: '2h', dataDir: '/srv/d', json: false }),
  row(daemonResume, ['daemon', 'resume', '--json'], { json: true }),
  row(busyAssign.forbidBusyAssign, ['daemon', 'forbid-busy-assign'], { json: false }),
  row(busyAssign.allowBusyAssign, ['daemon', 'allow-busy-assign', '--data-dir', '/srv/d'], { json: false, dataDir: '/srv/d' }),
  row(daemonUnit, ['daemon', 'unit', '--api-url', 'https://q.example', '--name', 'gpu-a', '--output', 'u.service', '--insecure'], {
    apiUrl: 'https://q.example',
    name: 'gpu-a',
    slots: '1',
    output: 'u.service',
    insecure: true,
  }),
  row(doctor, ['doctor', '--json'], { json: true }),
  row(completion, ['completion', 'fish'], { shell: 'fish' }),
  row(help, ['help'], { topic: [] }),
  row(help, ['help', 'project', 'init'], { topic: ['project', 'init'] }),
];

function declaredCommands(entries: readonly Declaration[]): CommandDeclaration[] {
  return entries.flatMap((entry) => (entry.kind === 'command' ? [entry] : declaredCommands(entry.commands)));
}

describe('flag parsing: command line → typed options, without running the command', () => {
  it.each(rows.map((r) => [r.argv.join(' '), r] as const))('cycle %s', async (_name, { argv, command, options }) => {
    const { code, invocation, stderr } = await parse(argv);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(invocation?.command).toBe(command);
    // The words up to the command's own name: `server`, `kv get`, `machine token create`.
    expect(invocation?.path).toEqual(argv.slice(0, argv.indexOf(command.name) + 1));
    expect(invocation?.options).toEqual(options);
  });

  it('every declared command has a row', async () => {
    const covered = new Set(rows.map((r) => r.command));
    const missing = declaredCommands((await loadCommands()).commands).filter((command) => !covered.has(command));
    expect(missing.map((command) => command.name)).toEqual([]);
  });

  it('a command line naming a group and one of its commands loads that command alone; with help, all', async () => {
    const whole = (await loadCommands()).commands.find((c) => c.name === 'project');
    if (whole?.kind !== 'group') throw new Error('no project group');
    for (const command of whole.commands) {
      const [group, ...others] = (await loadCommands(['node', 'cycle', 'project', command.name, '--json'])).commands;
      expect(others).toEqual([]);
      expect(group?.kind === 'group' ? group.commands : []).toEqual([command]); // the same declaration object
    }
    const helped = (await loadCommands(['node', 'cycle', 'project', 'hash', '--help'])).commands;
    expect(declaredCommands(helped)).toEqual(declaredCommands((await loadCommands()).commands));
    const unknown = (await loadCommands(['node', 'cycle', 'project', 'hsah'])).commands;
    expect(unknown.map((c) => (c.kind === 'group' ? c.commands.length : 0))).toEqual([whole.commands.length]); // "did you mean hash?" still sees every name
  });

  it('global flags reach every command, before or after its name', async () => {
    expect((await parse(['project', 'validate'])).invocation?.global).toEqual({ quiet: false, debug: false, color: true });
    expect((await parse(['-q', '--debug', 'project', 'validate'])).invocation?.global).toEqual({ quiet: true, debug: true, color: true });
    const mixed = (await parse(['project', 'validate', '--json', '--no-color', '--quiet'])).invocation;
    expect(mixed?.global).toEqual({ quiet: true, debug: false, color: false });
    // --json is the command's own flag (declared once, in shared-flags), not a global one.
    expect(mixed?.options).toMatchObject({ json: true });
  });

  it.each([
    ['an unknown flag', ['project', 'validate', '--jsn'], /unknown option '--jsn'/],
    ['a bad choice', ['job', 'submit', '--type', 'magic'], /Allowed choices are structured_runner, sweep, map_reduce, benchmark/],
    ['a bad argument choice', ['completion', 'powershell'], /Allowed choices are bash, zsh, fish/],
    ['a missing argument', ['kv', 'set', 'demo', 'key'], /missing required argument 'value'/],
    ['a missing variadic argument', ['job', 'cancel'], /missing required argument 'ids'/],
    ['a flag without its value', ['job', 'list', '--limit'], /option '--limit <n>' argument missing/],
  ])('%s is a usage error (exit 2) and runs nothing', async (_name, argv, message) => {
    const { code, invocation, stderr } = await parse(argv);
    expect(code).toBe(2);
    expect(stderr).toMatch(message);
    expect(invocation).toBeUndefined();
  });

  it("job submit's --type choices are the API's job types", () => {
    const type = submit.flags.type;
    expect(type?.kind === 'value' ? type.choices : undefined).toEqual(JOB_TYPES);
  });
});

const src = path.join(import.meta.dirname, '..', '..', 'src');

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile() && e.name.endsWith('.ts')).map((e) => path.join(e.parentPath, e.name));
}

/** The module specifiers a file imports at run time (type-only imports are erased). */
function runtimeImports(file: ts.SourceFile): string[] {
  return file.statements.flatMap((statement) => {
    if (!ts.isImportDeclaration(statement) || statement.importClause?.isTypeOnly === true) return [];
    return ts.isStringLiteral(statement.moduleSpecifier) ? [statement.moduleSpecifier.text] : [];
  });
}

function countAsCasts(node: ts.Node): number {
  return (ts.isAsExpression(node) ? 1 : 0) + node.getChildren().reduce((sum, child) => sum + countAsCasts(child), 0);
}

describe('declarations stay cheap and cast-free', () => {
  it('a declaration imports only the declaration layer at run time (its logic only through load)', async () => {
    const files = (await sourceFiles(path.join(src, 'commands'))).filter(
      (f) => f.endsWith('.command.ts') || f.endsWith('shared-flags.ts') || f.endsWith('declaration.ts'),
    );
    expect(files.length).toBeGreaterThan(15);
    for (const file of files) {
      const parsed = ts.createSourceFile(file, await fs.readFile(file, 'utf8'), ts.ScriptTarget.Latest, true);
      for (const specifier of runtimeImports(parsed))
        expect(`${path.relative(src, file)}: ${specifier}`).toMatch(/: ((\.\.?\/)+(declaration|shared-flags)|\.\.\/\.\.\/api\/job-kinds)\.js$/);
    }
  });

  it('the list of job kinds a declaration reads (api/job-kinds.ts) imports nothing at run time', async () => {
    const file = path.join(src, 'api', 'job-kinds.ts');
    const parsed = ts.createSourceFile(file, await fs.readFile(file, 'utf8'), ts.ScriptTarget.Latest, true);
    expect(parsed.statements.length).toBeGreaterThan(0);
    expect(runtimeImports(parsed)).toEqual([]);
  });

  it('no `as` cast between flags and options: none in cli.ts, program.ts or a declaration; one, explained, in declaration.ts', async () => {
    const files = [
      path.join(src, 'cli.ts'),
      path.join(src, 'program.ts'),
      ...(await sourceFiles(path.join(src, 'commands'))).filter((f) => f.endsWith('.command.ts') || f.endsWith('shared-flags.ts')),
    ];
    for (const file of files) {
      const parsed = ts.createSourceFile(file, await fs.readFile(file, 'utf8'), ts.ScriptTarget.Latest, true);
      expect(countAsCasts(parsed), path.relative(src, file)).toBe(0);
    }
    const layer = path.join(src, 'commands', 'declaration.ts');
    expect(countAsCasts(ts.createSourceFile(layer, await fs.readFile(layer, 'utf8'), ts.ScriptTarget.Latest, true))).toBe(1);
  });

  it('cli.ts declares no flag or argument of its own', async () => {
    const text = await fs.readFile(path.join(src, 'cli.ts'), 'utf8');
    expect(text).not.toMatch(/\.(option|requiredOption|addOption|argument|addArgument)\(/);
    expect(text).not.toMatch(/flag\.(boolean|negated|value|withDefault|choice|list)\(|arg\.(required|choice|optional|variadic)\(/);
  });
});
