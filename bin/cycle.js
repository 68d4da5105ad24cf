#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node
// glibc reads MALLOC_ARENA_MAX only at start-up, hence the shebang: packing deflates on the
// thread pool, and per-thread malloc arenas added ~30 MB to the peak RSS of a 1 GiB upload
// (budget now 128 MiB; measured here 161 MB without it, 128 MB with it). V8's young generation is
// capped at run time by the streaming commands themselves (src/util/gc.ts), so other commands
// start with V8's defaults.
// Tiny shim: `cycle --version` answers without loading the CLI (start-up time is a feature);
// everything else goes to dist/cli.js, which loads only the command that runs.
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-v')) {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`${pkg.version}\n`);
} else {
  // Packing compresses segments on libuv's thread pool: let it use every core (read at first use).
  if (process.env.UV_THREADPOOL_SIZE === undefined) {
    const { availableParallelism } = await import('node:os');
    process.env.UV_THREADPOOL_SIZE = String(Math.min(16, Math.max(4, availableParallelism())));
  }
  const { main } = await import('../dist/cli.js');
  process.exitCode = await main(process.argv);
}
