import fs from 'node:fs';
import path from 'node:path';
import { CYCLE, compare, report, tempDir, time } from './lib.mjs';

export function benchStartup() {
  const { a: node, b: cycle } = compare(
    15,
    3,
    () => time(process.execPath, ['-e', '0']),
    () => time(CYCLE, ['--version']),
  );
  const ratio = cycle / node;
  report('cycle --version / node -e 0', ratio.toFixed(2), 'x', '≤ 1.5x', ratio <= 1.5, `(${cycle.toFixed(0)} ms vs ${node.toFixed(0)} ms)`);
  // Start-up measured on a real command: validating a small project (manifest cache warm after
  // the first run, as it is for a user who validates twice).
  const root = tempDir('cycle-bench-validate-');
  fs.mkdirSync(path.join(root, '.cycleswap'));
  fs.writeFileSync(
    path.join(root, '.cycleswap/manifest.toml'),
    '[main]\nname = "bench-validate"\n[ubuntu]\nversion = "24.04"\n[job]\nemail_on_success = false\nemail_on_failure = false\n',
  );
  fs.writeFileSync(path.join(root, '.cycleswap/run.sh'), 'echo hello\n');
  fs.writeFileSync(path.join(root, '.cycleswap/build.sh'), 'true\n');
  time(CYCLE, ['project', 'validate'], { cwd: root });
  const { a: node2, b: validate } = compare(
    15,
    3,
    () => time(process.execPath, ['-e', '0']),
    () => time(CYCLE, ['project', 'validate', '--quiet'], { cwd: root }),
  );
  const validateRatio = validate / node2;
  report(
    'cycle project validate (small project) / node -e 0',
    validateRatio.toFixed(2),
    'x',
    '≤ 2x',
    validateRatio <= 2,
    `(${validate.toFixed(0)} ms vs ${node2.toFixed(0)} ms)`,
  );
  fs.rmSync(root, { recursive: true, force: true });
}
