import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CYCLE, compare, makeTree, peakRss, report, startServer, tempDir, time } from './lib.mjs';

/** A `.cycleswap/` project whose data/ folder is a tree of `files` files, `bytes` in all (makeTree's options after). */
function benchProject(prefix, files, bytes, ...shape) {
  const root = tempDir(prefix);
  console.log(`   (writing a ${files}-file, ${(bytes / 1e6).toFixed(0)} MB project in ${root})`);
  fs.mkdirSync(path.join(root, '.cycleswap'));
  fs.writeFileSync(
    path.join(root, '.cycleswap/manifest.toml'),
    '[main]\nname = "bench-pack"\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n',
  );
  fs.writeFileSync(path.join(root, '.cycleswap/run.sh'), 'true\n');
  fs.writeFileSync(path.join(root, '.cycleswap/build.sh'), 'true\n');
  makeTree(path.join(root, 'data'), files, bytes, ...shape);
  return root;
}

/** A 1 GiB, 20,000-file project, written once for both pack benchmarks. */
export function bigProject() {
  return benchProject('cycle-bench-pack-', 20_000, 1024 ** 3);
}

/** A 110 MB, 5,000-file project: 10% of each file random, 90% text (as source trees and logs). */
export function packProject() {
  return benchProject('cycle-bench-pack110-', 5_000, 110e6, 100, 0.1);
}

/**
 * `project pack` against `tar -c . | pigz -p2`: the same job (read every file, one gzip stream)
 * with both cores compressing while the tar is read. Time and size, medians of paired runs.
 */
export function benchPack(root) {
  const pigz = spawnSync('pigz', ['--version'], { stdio: 'ignore' });
  if (pigz.status !== 0) {
    report('project pack / tar | pigz -p2', 'n/a', '', '≤ 1.1x', false, '(pigz is not installed: run scripts/setup.sh)');
    return;
  }
  const out = tempDir('cycle-bench-out-');
  const tgz = path.join(out, 'tar.tgz');
  const ctgz = path.join(out, 'cycle.tgz');
  const { a: tar, b: cycle } = compare(
    5,
    1,
    () => time('sh', ['-c', `tar -c . | pigz -p2 > '${tgz}'`], { cwd: root }),
    () => time(CYCLE, ['project', 'pack', '--out', ctgz], { cwd: root }),
  );
  const ratio = cycle / tar;
  const sizeRatio = fs.statSync(ctgz).size / fs.statSync(tgz).size;
  report(
    'project pack / tar | pigz -p2 (5k files, 110 MB)',
    ratio.toFixed(2),
    'x',
    '≤ 1.1x',
    ratio <= 1.1,
    `(${(cycle / 1000).toFixed(2)} s vs ${(tar / 1000).toFixed(2)} s)`,
  );
  report(
    '  pack size / tar | pigz -p2 size',
    sizeRatio.toFixed(3),
    'x',
    '≤ 1.05x',
    sizeRatio <= 1.05,
    `(${fs.statSync(ctgz).size} vs ${fs.statSync(tgz).size} bytes)`,
  );
  fs.rmSync(out, { recursive: true, force: true });
}

/** Peak RSS of `project upload` of the 1 GiB project to a local server. */
export async function benchUpload(root) {
  const server = await startServer();
  try {
    const start = Date.now();
    const rss = peakRss(CYCLE, ['project', 'upload', '--force'], { cwd: root, env: { ...server.env, CYCLE_HTTP_TIMEOUT: '600' } });
    report('peak RSS of pack + upload of 1 GiB', rss.toFixed(0), 'MiB', '≤ 128 MiB', rss <= 128, `(${((Date.now() - start) / 1000).toFixed(1)} s)`);
  } finally {
    await server.stop();
  }
}
