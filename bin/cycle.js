#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=2
// Memory settings that only work from the start, hence the shebang. Packing and uploading 1 GiB
// churn through short-lived Buffers: V8's default 16 MB young generation and glibc's per-thread
// malloc arenas (zlib runs on the thread pool) each added 10-30 MB of peak RSS, and the upload
// has a 150 MB budget (measured here: 172 MB with neither setting, ~139 MB with both, no slower).
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
