// npm run bench [-- startup|hash|test|pack|upload|watch|server|web|pool ...]: prints each budget as a ratio against a baseline
// measured in the same run. Benchmarks report; they are not timed tests.
import fs from 'node:fs';
import path from 'node:path';
import { CYCLE, ROOT, summary } from './lib.mjs';
import { benchStartup } from './startup.mjs';
import { benchHash } from './hash.mjs';
import { benchProjectTest } from './project-test.mjs';
import { benchPack, benchUpload, bigProject, packProject } from './pack.mjs';
import { benchWatch } from './watch.mjs';
import { benchServer } from './server.mjs';
import { benchWeb } from './web.mjs';
import { benchPool } from './pool.mjs';

if (!fs.existsSync(path.join(ROOT, 'dist', 'cli.js'))) {
  console.error('bench: build first (npm run build)');
  process.exit(1);
}
let big;
const packTree = () => (big ??= bigProject());
const all = {
  startup: benchStartup,
  hash: benchHash,
  test: benchProjectTest,
  pack: () => {
    const root = packProject();
    try {
      benchPack(root);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  },
  upload: () => benchUpload(packTree()),
  watch: benchWatch,
  server: benchServer,
  web: benchWeb,
  pool: benchPool,
};
const wanted = process.argv.slice(2).filter((a) => a in all);
console.log(`cycle benchmarks — node ${process.version}, ${CYCLE}`);
for (const [name, bench] of Object.entries(all)) {
  if (wanted.length && !wanted.includes(name)) continue;
  await bench();
}
if (big) fs.rmSync(big, { recursive: true, force: true });
const failed = summary().filter((r) => r.ok === false);
console.log(failed.length ? `\n${failed.length} budget(s) over: ${failed.map((r) => r.name).join('; ')}` : '\nall budgets met');
