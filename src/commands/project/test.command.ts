import { defineCommand, flag, type OptionsFrom } from '../declaration.js';
import { jsonFlag } from '../shared-flags.js';

const testFlags = {
  ...jsonFlag,
  rebuild: flag.boolean('--rebuild', 're-run build.sh on top of the previous build image, even if nothing changed'),
  clean: flag.boolean('--clean', 'build from the bare base image'),
  volume: flag.list('--volume <NAME=PATH>', 'host folder for a manifest volume, mounted at /volumes/NAME (repeatable; default .cycle/volumes/NAME)'),
  resume: flag.optionalValue(
    '--resume [RUN]',
    "start with a previous run's artifacts in /artifacts (RUN: a run id of .cycle/runs; the latest run by default)",
    'latest',
  ),
  payload: flag.value('--payload <JSON|@file|->', 'the task payload (runner protocol): JSON, @file, or - for stdin'),
  skipLimits: flag.boolean('--skip-limits', "run without the platforms' limits (memory 90% of RAM, 4096 processes)"),
};
export type TestOptions = OptionsFrom<{}, typeof testFlags>;

export const test = defineCommand({
  name: 'test',
  summary: 'build and run the project locally in Docker, exactly as a remote worker would',
  args: {},
  flags: testFlags,
  notes:
    'Exit status: 0 when the job succeeds, 6 when it fails (its own exit code is shown; also when it runs out of memory), 130 on Ctrl-C.\nArtifacts (files the job writes under /artifacts, $CYCLE_ARTIFACTS_DIR) are captured while it runs into .cycle/runs/<run>/artifacts.',
  examples: [
    'cycle project test',
    'cycle project test --rebuild',
    'cycle project test --volume training-data=/data/train',
    `cycle project test --payload '{"steps": 3}' --json`,
    'cycle project test --resume',
  ],
  load: () => import('./test.js'),
});
