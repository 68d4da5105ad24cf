/** Flags that many commands share, declared once. Cheap to import: no run-time imports but declaration.ts. */
import { flag } from './declaration.js';

export const jsonFlag = { json: flag.boolean('--json', 'print JSON on stdout instead of text') };

export const apiUrlFlag = { apiUrl: flag.value('--api-url <url>', 'the server (default: CYCLE_API_URL, then the config)', { emptyIsUnset: true }) };

/** `--project <name>`; commands that use it differently say how in their own words. */
export function projectFlag(description = "the project (default: $CYCLE_PROJECT, then the manifest's name)") {
  return { project: flag.value('--project <name>', description, { emptyIsUnset: true }) };
}

/** `--wait` and `--cancel-on-interrupt`, for the commands that submit a job and can follow it to its end. */
export const waitFlags = {
  wait: flag.boolean('--wait', 'follow the job to its end (exit 0 completed, 6 failed or partial)'),
  cancelOnInterrupt: flag.boolean('--cancel-on-interrupt', 'with --wait: Ctrl-C cancels the job (otherwise it goes on)'),
};

/** The program's own flags: every command accepts them. */
export const globalFlags = {
  quiet: flag.boolean('-q, --quiet', 'print only data and errors (no progress)'),
  debug: flag.boolean('--debug', 'print debug traces (Docker commands, HTTP requests, stack traces)'),
  color: flag.negated('--no-color', 'no colours (also: NO_COLOR, CI, or output not a terminal)'),
};
