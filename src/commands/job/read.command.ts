import { arg, defineCommand, flag, type OptionsFrom } from '../declaration.js';
import { apiUrlFlag, jsonFlag, projectFlag } from '../shared-flags.js';

const readFlags = { ...apiUrlFlag, ...jsonFlag };
const listFlags = {
  ...readFlags,
  tag: flag.value('--tag <tag>', 'only jobs with this tag'),
  status: flag.value('--status <status>', 'only jobs in this state'),
  ...projectFlag('only jobs of this project'),
  limit: flag.value('--limit <n>', 'at most N jobs (default 20)'),
};
export type ListOptions = OptionsFrom<{}, typeof listFlags>;
const byIdArgs = { id: arg.required('the job id') };
export type ByIdOptions = OptionsFrom<typeof byIdArgs, typeof readFlags>;
const tasksFlags = { ...readFlags, timings: flag.boolean('--timings', "where each task's time went: queue, image, create, start, run, capture, store") };
export type TasksOptions = OptionsFrom<typeof byIdArgs, typeof tasksFlags>;
const logsFlags = {
  ...readFlags,
  follow: flag.boolean('--follow', 'stream it live until the job ends'),
  task: flag.value('--task <n>', 'only task N (its index)'),
};
export type LogsOptions = OptionsFrom<typeof byIdArgs, typeof logsFlags>;
const tailFlags = { ...readFlags, task: logsFlags.task };
export type TailOptions = OptionsFrom<typeof byIdArgs, typeof tailFlags>;
const idsArgs = { ids: arg.variadic('job ids', { required: true }) };
export type IdsOptions = OptionsFrom<typeof idsArgs, typeof readFlags>;

export const list = defineCommand({
  name: 'list',
  summary: 'list jobs, newest first',
  args: {},
  flags: listFlags,
  examples: ['cycle job list --tag exp42', 'cycle job list --status failed --json | jq -r ".[].id"'],
  load: async () => ({ run: (await import('./read.js')).list }),
});

export const get = defineCommand({
  name: 'get',
  summary: 'show a job',
  args: byIdArgs,
  flags: readFlags,
  examples: ['cycle job get job_123'],
  load: async () => ({ run: (await import('./read.js')).get }),
});

export const tasks = defineCommand({
  name: 'tasks',
  summary: "a job's tasks: status, attempts, exit codes, errors",
  args: byIdArgs,
  flags: tasksFlags,
  notes: "--timings is a cycle server feature (`GET /api/v1/jobs/ID/timings`); with --json it prints each task's stage times (ms since the epoch).",
  examples: ['cycle job tasks job_123', 'cycle job tasks job_123 --timings'],
  load: async () => ({ run: (await import('./read.js')).tasks }),
});

export const results = defineCommand({
  name: 'results',
  summary: "a job's results: one line per item (--json: the whole document)",
  args: byIdArgs,
  flags: readFlags,
  examples: ['cycle job results job_123 --json | jq ".items[].result"'],
  load: async () => ({ run: (await import('./read.js')).results }),
});

export const logs = defineCommand({
  name: 'logs',
  summary: "a job's output (stdout and stderr of its tasks)",
  args: byIdArgs,
  flags: logsFlags,
  notes: '`cycle job tail ID` is the same as `cycle job logs ID --follow`.',
  examples: ['cycle job logs job_123', 'cycle job logs job_123 --follow --task 3'],
  load: async () => ({ run: (await import('./read.js')).logs }),
});

export const tail = defineCommand({
  name: 'tail',
  summary: "follow a job's output until it ends; the same as `job logs --follow`",
  args: byIdArgs,
  flags: tailFlags,
  notes: 'The same as `cycle job logs ID --follow` (the name the real cycle CLI uses).',
  examples: ['cycle job tail job_123', 'cycle job tail job_123 --task 0'],
  load: async () => ({ run: (await import('./read.js')).tail }),
});

export const watch = defineCommand({
  name: 'watch',
  summary: 'follow jobs live until they end (exit 0 when all completed, 6 otherwise)',
  args: idsArgs,
  flags: readFlags,
  notes: '--json prints each event as a JSON line.',
  examples: ['cycle job watch job_1 job_2', 'cycle job watch job_1 --json | jq -c "select(.type == \\"task\\")"'],
  load: async () => ({ run: (await import('./read.js')).watch }),
});

export const cancel = defineCommand({
  name: 'cancel',
  summary: 'cancel jobs (running containers are stopped)',
  args: idsArgs,
  flags: readFlags,
  examples: ['cycle job cancel job_123'],
  load: async () => ({ run: (await import('./read.js')).cancel }),
});
