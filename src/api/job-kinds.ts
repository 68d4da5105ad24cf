/**
 * The job kinds a `POST /api/v1/jobs` may name in `type`: the one list the request schema, the
 * CLI's `--type` flag and the server's kind registry (`src/server/kinds/registry.ts`) read. No
 * imports: command declarations load it without loading zod (docs/design.md, "Where a new command goes").
 */
export const JOB_TYPES = ['structured_runner', 'sweep', 'map_reduce', 'benchmark'] as const;

export type JobType = (typeof JOB_TYPES)[number];
