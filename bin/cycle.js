#!/usr/bin/env node
// Tiny shim: `cycle --version` answers without loading the CLI (start-up time is a feature);
// everything else goes to dist/cli.js, which loads only the command that runs.
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-v')) {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  process.stdout.write(`${pkg.version}\n`);
} else {
  const { main } = await import('../dist/cli.js');
  process.exitCode = await main(process.argv);
}
