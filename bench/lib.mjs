// Helpers for cycle's benchmarks: each budget is a ratio against a baseline measured in the
// same run, so the numbers mean the same on a fast laptop and a slow CI machine.
import { spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';

export const ROOT = path.resolve(import.meta.dirname, '..');
export const CYCLE = path.join(ROOT, 'bin', 'cycle.js');

/** Runs a command and returns its wall time in ms; throws when it fails. */
export function time(file, args, options = {}) {
  const start = process.hrtime.bigint();
  const result = spawnSync(file, args, { stdio: ['pipe', 'ignore', 'pipe'], ...options, env: { ...process.env, NO_COLOR: '1', ...options.env } });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.status !== 0) throw new Error(`${file} ${args.join(' ')} failed (${result.status}): ${String(result.stderr).slice(-500)}`);
  return ms;
}

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Alternates the two commands `runs` times after `warmup` rounds; medians of each. */
export function compare(runs, warmup, a, b) {
  for (let i = 0; i < warmup; i++) {
    a();
    b();
  }
  const as = [];
  const bs = [];
  for (let i = 0; i < runs; i++) {
    as.push(a());
    bs.push(b());
  }
  return { a: median(as), b: median(bs) };
}

export function tempDir(prefix) {
  return fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
}

export function dockerAvailable() {
  try {
    execFileSync('docker', ['image', 'inspect', 'ubuntu:24.04'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const results = [];

export function report(name, value, unit, budget, ok, detail) {
  results.push({ name, value, unit, budget, ok, detail });
  const mark = ok === undefined ? '  ' : ok ? 'ok' : '!!';
  console.log(`${mark}  ${name.padEnd(46)} ${String(value).padStart(10)} ${unit.padEnd(6)} budget ${budget.padEnd(10)} ${detail ?? ''}`);
}

export function summary() {
  return results;
}

/**
 * A tree of `files` files totalling about `bytes` bytes, in `dirs` folders. `randomShare` of each
 * file is random (it does not compress), the rest text-like (it does), so gzip has real work to do.
 */
export function makeTree(root, files, bytes, dirs = 200, randomShare = 0.5) {
  const size = Math.floor(bytes / files);
  const pool = crypto.randomBytes(4 << 20);
  const text = Buffer.from(
    'epoch,loss,accuracy\n' + Array.from({ length: 4096 }, (_, i) => `${i},${(1 / (i + 1)).toFixed(6)},${(i / 4096).toFixed(4)}\n`).join(''),
  );
  for (let d = 0; d < dirs; d++) fs.mkdirSync(path.join(root, `d${d}`), { recursive: true });
  for (let i = 0; i < files; i++) {
    const offset = (i * 7919) % (pool.length - size);
    const half = Math.floor(size * randomShare);
    const block = Buffer.concat([pool.subarray(offset, offset + half), repeat(text, size - half)]);
    block.writeUInt32LE(i, 0); // every file different
    fs.writeFileSync(path.join(root, `d${i % dirs}`, `f${i}.bin`), block);
  }
}

/** `length` bytes of `text` over and over. */
function repeat(text, length) {
  const out = Buffer.alloc(length);
  for (let at = 0; at < length; at += text.length) text.copy(out, at, 0, Math.min(text.length, length - at));
  return out;
}

/** Peak resident memory (MiB) of a command, from GNU time. */
export function peakRss(file, args, options = {}) {
  const result = spawnSync('/usr/bin/time', ['-f', 'CYCLE_MAXRSS_KB %M', file, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...options,
    env: { ...process.env, NO_COLOR: '1', ...options.env },
  });
  const match = /CYCLE_MAXRSS_KB (\d+)/.exec(String(result.stderr));
  if (result.status !== 0 || !match) throw new Error(`${file} ${args.join(' ')} failed (${result.status}): ${String(result.stderr).slice(-800)}`);
  return Number(match[1]) / 1024;
}

/**
 * A `cycle server` on a free port in a temp data folder, and a way to run `cycle` against it.
 * `args` and `env` are added to its command line and environment (`--no-local-worker`), `nodeArgs` to node's (`--cpu-prof`).
 */
export async function startServer(workers = 2, { args = [], env: serverEnv = {}, nodeArgs = [] } = {}) {
  const { spawn } = await import('node:child_process');
  const data = tempDir('cycle-bench-server-');
  const command = ['server', '--port', '0', '--data-dir', data, '--workers', String(workers), ...args];
  // As its shebang runs it (MALLOC_ARENA_MAX=2), through node itself only when node is given flags.
  const server = spawn(nodeArgs.length ? process.execPath : CYCLE, nodeArgs.length ? [...nodeArgs, CYCLE, ...command] : command, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...(nodeArgs.length ? { MALLOC_ARENA_MAX: '2' } : {}), ...serverEnv },
  });
  let log = '';
  server.stderr.on('data', (c) => (log += c));
  for (let i = 0; i < 100 && !/listening on/.test(log); i++) await new Promise((r) => setTimeout(r, 100));
  const url = /listening on (http:\/\/\S+)/.exec(log)?.[1];
  if (!url) throw new Error(`the server did not start: ${log}`);
  const env = {
    ...process.env,
    CYCLE_API_URL: url,
    CYCLE_TOKEN: fs.readFileSync(path.join(data, 'token'), 'utf8').trim(),
    XDG_CONFIG_HOME: data,
    NO_COLOR: '1',
  };
  return {
    pid: server.pid,
    log: () => log,
    env,
    /** Runs a program (default: cycle) in `cwd` with the server's settings; resolves with its output and end time. */
    run: (args, options = {}) =>
      new Promise((resolve, reject) => {
        const child = spawn(options.file ?? CYCLE, args, { cwd: options.cwd, env: { ...env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (c) => (stdout += c));
        child.stderr.on('data', (c) => (stderr += c));
        child.on('close', (code) =>
          code === 0 ? resolve({ stdout, stderr, end: Date.now() }) : reject(new Error(`${args.join(' ')}: exit ${code}\n${stderr}`)),
        );
      }),
    stop: async () => {
      server.kill('SIGTERM');
      await new Promise((r) => server.on('close', r));
      fs.rmSync(data, { recursive: true, force: true });
    },
  };
}

/** A .cycleswap/ project in a temp folder with the given run.sh. */
export function cycleswapProject(name, runScript) {
  const root = tempDir(`cycle-bench-${name}-`);
  fs.mkdirSync(path.join(root, '.cycleswap'));
  fs.writeFileSync(
    path.join(root, '.cycleswap/manifest.toml'),
    `[main]\nname = "${name}"\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n`,
  );
  fs.writeFileSync(path.join(root, '.cycleswap/run.sh'), runScript);
  fs.writeFileSync(path.join(root, '.cycleswap/build.sh'), 'true\n');
  return root;
}
