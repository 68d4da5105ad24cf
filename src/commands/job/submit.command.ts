import { JOB_TYPES } from '../../api/job-kinds.js';
import { defineCommand, flag, type OptionsFrom } from '../declaration.js';
import { apiUrlFlag, jsonFlag, projectFlag, waitFlags } from '../shared-flags.js';

const submitFlags = {
  ...apiUrlFlag,
  ...jsonFlag,
  ...projectFlag(),
  // The one list of kinds (api/job-kinds.ts imports nothing: no zod loaded for a declaration).
  type: flag.choice('--type <type>', 'job type', JOB_TYPES),
  runner: flag.value('--runner <command>', 'the command each task runs, e.g. "python3 eval.py" (default: .cycleswap/run.sh or the entrypoint)'),
  runnerJson: flag.value('--runner-json <json>', 'the command as a JSON array, e.g. \'["python3","eval.py"]\''),
  reduce: flag.value('--reduce <command>', 'map_reduce: the reduce command'),
  reduceJson: flag.value('--reduce-json <json>', 'map_reduce: the reduce command as a JSON array'),
  payload: flag.value('--payload <JSON|@file|->', 'the payload (a JSON object)'),
  fanOutBy: flag.value('--fan-out-by <field>', "one task per element of the payload's array FIELD"),
  fanOutItems: flag.value('--fan-out-items <@file|->', 'one task per item: JSON lines, or a JSON array'),
  chunks: flag.value('--chunks <n>', 'split a range in N chunks (with --range-field and --total)'),
  rangeField: flag.value('--range-field <field>', "the payload field that gets each chunk's {start, end}"),
  total: flag.value('--total <n>', 'the size of the range'),
  batchSize: flag.value('--batch-size <n>', 'items per task (the task gets payload._batch)'),
  profile: flag.value('--profile <profile>', 'e.g. gpu'),
  timeout: flag.value('--timeout <duration>', 'per task: seconds, or 90s, 10m, 1h30m'),
  require: flag.value('--require <list>', 'minimum requirements, e.g. gpu=1,storage_gb=40'),
  tag: flag.list('--tag <tag>', 'a tag (repeatable)'),
  meta: flag.list('--meta <key=value>', 'metadata (repeatable; JSON values kept as JSON)'),
  variant: flag.value('--variant <name>', 'a variant label'),
  dependsOn: flag.list('--depends-on <job>', 'wait for this job to complete first (repeatable)'),
  callbackUrl: flag.value('--callback-url <url>', 'POSTed the job when it finishes'),
  clientRef: flag.value('--client-ref <ref>', 'your own reference, returned with the job'),
  idempotencyKey: flag.value('--idempotency-key <key>', 'resubmitting with the same key returns the first job instead of a new one'),
  ...waitFlags,
};
export type SubmitOptions = OptionsFrom<{}, typeof submitFlags>;

export const submit = defineCommand({
  name: 'submit',
  summary: 'submit a job; prints its id (not on a terminal: only the id)',
  args: {},
  flags: submitFlags,
  examples: [
    `cycle job submit --runner "python3 eval.py" --payload '{"model": "m1"}'`,
    `cycle job submit --payload '{"models": ["a","b","c"]}' --fan-out-by models --wait`,
    'cycle job submit --fan-out-items @items.jsonl --batch-size 50 --tag exp42',
    'cycle job submit --chunks 20 --range-field seeds --total 10000 --timeout 10m',
  ],
  notes: '`cycle job queue` is the same command (the name the real cycle CLI uses).',
  load: () => import('./submit.js'),
});

/** The real CLI's name for submitting the current project's job: the same flags, the same code. */
export const queue = defineCommand({
  name: 'queue',
  summary: "queue the current project's job (run.sh, or the OCI entrypoint); the same as `job submit`",
  args: {},
  flags: submitFlags,
  notes: 'The same command as `cycle job submit`: the project is --project, $CYCLE_PROJECT, or the one in this folder.',
  examples: ['cycle job queue', `cycle job queue --payload '{"epochs": 10}' --wait`],
  load: () => import('./submit.js'),
});
