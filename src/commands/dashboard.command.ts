import { defineCommand, flag, type OptionsFrom } from './declaration.js';
import { apiUrlFlag } from './shared-flags.js';

const dashboardFlags = { ...apiUrlFlag, open: flag.negated('--no-open', 'print the link only; do not open a browser') };
export type DashboardOptions = OptionsFrom<{}, typeof dashboardFlags>;

export const dashboard = defineCommand({
  name: 'dashboard',
  summary: "open the server's web page: jobs, live logs, progress curves, artifacts",
  args: {},
  flags: dashboardFlags,
  notes:
    'Prints a one-time sign-in link for the server (it works once, for 10 minutes) and, on a terminal,\n' +
    'opens it in your browser. The link carries a code, not your token: opening it signs the browser in\n' +
    'with a session cookie. When stdout is not a terminal only the link is printed (and no browser opens).',
  examples: ['cycle dashboard', 'cycle dashboard --no-open', 'cycle dashboard --api-url http://gpu-box:8787'],
  load: () => import('./dashboard.js'),
});
