/*
 * The page's one way to the server: same-origin requests carrying the session cookie (set by the
 * sign-in link; HttpOnly, so no script here ever sees it), and on every change the session's CSRF
 * value in X-Cycle-CSRF. The API token is never here.
 */

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let csrf: string | undefined;
const signedOutListeners = new Set<() => void>();

export function onSignedOut(listener: () => void): void {
  signedOutListeners.add(listener);
}

async function failure(response: Response): Promise<ApiFailure> {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = (await response.json()) as { error?: { message?: string } };
    if (body?.error?.message) message = body.error.message;
  } catch {
    // not JSON: the status says it
  }
  if (response.status === 401) for (const listener of signedOutListeners) listener();
  return new ApiFailure(response.status, message);
}

export async function getJson<T>(path: string, init: { signal?: AbortSignal } = {}): Promise<T> {
  const response = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' }, ...init });
  if (!response.ok) throw await failure(response);
  return (await response.json()) as T;
}

/** A change (cancel, sign-out): the CSRF value first read from the session. */
export async function change<T>(method: 'PUT' | 'POST' | 'DELETE', path: string): Promise<T> {
  csrf ??= (await getJson<{ csrf: string }>('/api/v1/session')).csrf;
  const response = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: { Accept: 'application/json', 'X-Cycle-CSRF': csrf, 'Content-Type': 'application/json' },
    body: method === 'DELETE' ? null : '{}',
  });
  if (!response.ok) throw await failure(response);
  return (await response.json()) as T;
}

/** Whether this browser holds a live session (the answer's CSRF value is kept for changes). */
export async function checkSession(): Promise<boolean> {
  try {
    csrf = (await getJson<{ csrf: string }>('/api/v1/session')).csrf;
    return true;
  } catch (error) {
    if (error instanceof ApiFailure && error.status === 401) return false;
    throw error;
  }
}

export async function signOut(): Promise<void> {
  await change('DELETE', '/api/v1/session');
  csrf = undefined;
}

export const enc = encodeURIComponent;

/** A query string from the set values. */
export function query(values: Record<string, string | number | undefined | null>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
  const text = params.toString();
  return text ? `?${text}` : '';
}

export interface Job {
  id: string;
  type: string;
  project: string;
  revision: number | null;
  status: string;
  tags: string[];
  meta: Record<string, unknown> | null;
  variant: unknown;
  payload: unknown;
  fan_out: unknown;
  counts: { total: number; queued: number; running: number; succeeded: number; failed: number; cancelled: number };
  error: string | null;
  recommended_action?: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  last_event_id?: string;
}

export interface Task {
  id: string;
  index: number;
  kind: string;
  status: string;
  attempt: number;
  payload: unknown;
  items?: unknown;
  result: unknown;
  error: string | null;
  exit_code: number | null;
  latest_progress: unknown;
  duration_s?: number | null;
  started_at?: string | null;
  finished_at?: string | null;
}

export interface Artifact {
  id: string;
  job_id: string;
  task_id: string;
  name: string;
  size: number;
  sha256: string;
  created_at: string;
}

export interface ProgressPage {
  fields: string[];
  tasks: Array<{ task_id: string; index: number; points_total: number; points: Array<{ at: number; values: Record<string, number> }> }>;
  next_cursor: string | null;
}

export const TERMINAL = new Set(['completed', 'partial', 'failed', 'cancelled']);
