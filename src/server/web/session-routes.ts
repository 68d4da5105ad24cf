/**
 * The API routes the web page calls, which its session cookie authenticates (every other route
 * needs the token). Reads, the streams, the artifact bytes, cancel and the session itself; not
 * pushes, submissions, uploads, volumes' changes or the links route (the page never makes a link).
 * The machine pool's (issue 20): its list, one machine, and drain / undrain (the machines page's button).
 */
export const SESSION_ROUTES: ReadonlySet<string> = new Set([
  'GET /api/v1/session',
  'DELETE /api/v1/session',
  'GET /api/v1/jobs',
  'GET /api/v1/jobs/stream',
  'GET /api/v1/jobs/watch',
  'GET /api/v1/jobs/:id',
  'GET /api/v1/jobs/:id/tasks',
  'GET /api/v1/jobs/:id/output',
  'GET /api/v1/jobs/:id/log',
  'GET /api/v1/jobs/:id/progress',
  'GET /api/v1/jobs/:id/stream',
  'PUT /api/v1/jobs/:id/cancel',
  'GET /api/v1/results/:id',
  'GET /api/v1/artifacts',
  'GET /api/v1/artifacts/:id',
  'GET /api/v1/projects',
  'GET /api/v1/projects/:name/status/details',
  'GET /api/v1/volumes',
  'GET /api/v1/volumes/:name',
  'GET /api/v1/account/balance',
  'GET /api/v1/account/holds',
  'GET /api/v1/account/ledger',
  'GET /api/v1/machines',
  'GET /api/v1/machines/:name',
  'POST /api/v1/machines/:name/drain',
  'DELETE /api/v1/machines/:name/drain',
]);
