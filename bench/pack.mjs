import fs from 'node:fs';
import path from 'node:path';
import { CYCLE, compare, makeTree, peakRss, report, startServer, tempDir, time } from './lib.mjs';

/** A 1 GiB, 20,000-file project, written once for both pack benchmarks. */
export function bigProject() {
  const root = tempDir('cycle-bench-pack-');
  console.log(`   (writing a 20000-file, 1 GiB project in ${root})`);
  fs.mkdirSync(path.join(root, '.cycleswap'));
  fs.writeFileSync(
    path.join(root, '.cycleswap/manifest.toml'),
    '[main]\nname = "bench-pack"\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n',
  );
  fs.writeFileSync(path.join(root, '.cycleswap/run.sh'), 'true\n');
  fs.writeFileSync(path.join(root, '.cycleswap/build.sh'), 'true\n');
  makeTree(path.join(root, 'data'), 20_000, 1024 ** 3);
  return root;
}

export function benchPack(root) {
  const out = tempDir('cycle-bench-out-');
  const { a: tar, b: cycle } = compare(
    3,
    0,
    () => time('tar', ['-czf', path.join(out, 'tar.tgz'), '-C', root, '.']),
    () => time(CYCLE, ['project', 'pack', '--out', path.join(out, 'cycle.tgz')], { cwd: root }),
  );
  const ratio = cycle / tar;
  report(
    'project pack / tar -czf (20k files, 1 GiB)',
    ratio.toFixed(2),
    'x',
    '≤ 1.0x',
    ratio <= 1.0,
    `(${(cycle / 1000).toFixed(1)} s vs ${(tar / 1000).toFixed(1)} s)`,
  );
  fs.rmSync(out, { recursive: true, force: true });
}

/** Peak RSS of `project upload` of the 1 GiB project to a local server. */
export async function benchUpload(root) {
  const server = await startServer();
  try {
    const start = Date.now();
    const rss = peakRss(CYCLE, ['project', 'upload', '--force'], { cwd: root, env: { ...server.env, CYCLE_HTTP_TIMEOUT: '600' } });
    report('peak RSS of pack + upload of 1 GiB', rss.toFixed(0), 'MiB', '< 150 MiB', rss < 150, `(${((Date.now() - start) / 1000).toFixed(1)} s)`);
  } finally {
    await server.stop();
  }
}
