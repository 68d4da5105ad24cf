import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { CYCLE, dockerAvailable, median, report, tempDir, time } from './lib.mjs';

export function benchProjectTest() {
  if (!dockerAvailable()) {
    console.log('   project test: skipped (Docker or the ubuntu:24.04 image is missing; run scripts/setup.sh)');
    return;
  }
  const root = tempDir('cycle-bench-test-');
  fs.mkdirSync(path.join(root, '.cycleswap'));
  fs.writeFileSync(
    path.join(root, '.cycleswap/manifest.toml'),
    '[main]\nname = "bench-trivial"\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n',
  );
  fs.writeFileSync(path.join(root, '.cycleswap/run.sh'), 'echo hello\n');
  fs.writeFileSync(path.join(root, '.cycleswap/build.sh'), 'true\n');
  fs.writeFileSync(path.join(root, 'main.py'), 'print("hi")\n');
  time(CYCLE, ['project', 'test', '--quiet'], { cwd: root }); // the one build
  const image = JSON.parse(fs.readFileSync(path.join(root, '.cycle/last-build.json'), 'utf8')).image.id;
  const plainRuns = [];
  const cycleRuns = [];
  const floorRuns = [];
  const floorScript = path.join(import.meta.dirname, 'floor-run.mjs');
  // What the real run pipes into the container: the project's files (not .cycle/), as a tar.
  const sourceTar = path.join(root, '.cycle', 'floor-source.tar');
  execFileSync('tar', ['-cf', sourceTar, '--exclude=./.cycle', '.'], { cwd: root });
  for (let i = 0; i < 12; i++) {
    const plain = time('docker', ['run', '--rm', '-w', '/app', image, 'bash', '.cycleswap/run.sh']);
    const cycle = time(CYCLE, ['project', 'test', '--quiet'], { cwd: root });
    const floor = time(process.execPath, [floorScript, image, '/app', sourceTar, 'bash', '.cycleswap/run.sh']);
    if (i < 2) continue; // warm-up
    plainRuns.push(plain);
    cycleRuns.push(cycle);
    floorRuns.push(floor);
  }
  const plain = median(plainRuns);
  const cycle = median(cycleRuns);
  const floor = median(floorRuns);
  // The budget is a ratio to the Node floor: a bare Node script making the same Engine API calls.
  const ratio = cycle / floor;
  report('unchanged project test / Node floor', ratio.toFixed(2), 'x', '≤ 1.2x', ratio <= 1.2, `(${cycle.toFixed(0)} ms vs ${floor.toFixed(0)} ms)`);
  report(
    '  floor: a bare Node script, same API calls',
    floor.toFixed(0),
    'ms',
    '-',
    undefined,
    '(Node start; create, attach with stdin, wait, start, inspect, remove)',
  );
  report('  against a plain docker run', (cycle / plain).toFixed(2), 'x', '-', undefined, `(${plain.toFixed(0)} ms)`);
  const node = time(process.execPath, ['-e', '0']);
  report('  of which Node.js start-up (node -e 0)', node.toFixed(0), 'ms', '-', undefined);
  execFileSync('docker', ['rmi', '-f', image], { stdio: 'ignore' });
  fs.rmSync(root, { recursive: true, force: true });
}
