import { CYCLE, compare, report, time } from './lib.mjs';

export function benchStartup() {
  const { a: node, b: cycle } = compare(15, 3, () => time(process.execPath, ['-e', '0']), () => time(CYCLE, ['--version']));
  const ratio = cycle / node;
  report('cycle --version / node -e 0', ratio.toFixed(2), 'x', '≤ 1.5x', ratio <= 1.5, `(${cycle.toFixed(0)} ms vs ${node.toFixed(0)} ms)`);
  const help = time(CYCLE, ['project', 'validate', '--help']);
  report('cycle project validate --help (one run)', help.toFixed(0), 'ms', '-', undefined);
}
