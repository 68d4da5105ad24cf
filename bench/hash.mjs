import fs from 'node:fs';
import path from 'node:path';
import { CYCLE, makeTree, median, report, tempDir, time } from './lib.mjs';

export async function benchHash() {
  const root = tempDir('cycle-bench-hash-');
  const files = 20_000;
  const bytes = 1024 ** 3;
  console.log(`   (writing a ${files}-file, 1 GiB tree in ${root})`);
  fs.mkdirSync(path.join(root, '.cycleswap'));
  fs.writeFileSync(
    path.join(root, '.cycleswap/manifest.toml'),
    '[main]\nname = "bench"\nbuild_files = ["data"]\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n',
  );
  fs.writeFileSync(path.join(root, '.cycleswap/run.sh'), 'true\n');
  fs.writeFileSync(path.join(root, '.cycleswap/build.sh'), 'true\n');
  makeTree(path.join(root, 'data'), files, bytes);
  // The stat cache does not trust files changed in the last two seconds.
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const run = () => time(CYCLE, ['project', 'hash'], { cwd: root });
  const colds = [];
  const warms = [];
  for (let i = 0; i < 3; i++) {
    fs.rmSync(path.join(root, '.cycle'), { recursive: true, force: true });
    spawnDropCaches();
    colds.push(run());
    warms.push(run());
    warms.push(run());
  }
  const floors = [];
  for (let i = 0; i < 5; i++) floors.push(time(process.execPath, [path.join(import.meta.dirname, 'floor-stat.mjs'), path.join(root, 'data')]));
  const cold = median(colds);
  const warm = median(warms);
  const floor = median(floors);
  // The budget is a ratio to the floor: no Node program that must stat every file can beat a
  // bare Node script that only does that.
  const ratio = warm / floor;
  report('project hash warm / floor (20k files, 1 GiB)', ratio.toFixed(2), 'x', '≤ 1.2x', ratio <= 1.2, `(${warm.toFixed(0)} ms vs ${floor.toFixed(0)} ms)`);
  report('  floor: a bare Node script stats every file', floor.toFixed(0), 'ms', '-', undefined, '(Node start, readdir, one stat per file)');
  report('  warm / cold', ((warm / cold) * 100).toFixed(1), '%', '-', undefined, `(cold: ${cold.toFixed(0)} ms)`);
  fs.rmSync(root, { recursive: true, force: true });
}

/** Cold means the file bytes are read and hashed again; the OS page cache may still hold them. */
function spawnDropCaches() {
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '1');
  } catch {
    // not root: "cold" then means no stat cache, with the page cache warm
  }
}
