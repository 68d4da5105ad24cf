/** Paging of `/tasks`, `/results` and `/output` (docs/api.md): tasks per page by default, at most. */
export const PAGE_DEFAULT_LIMIT = 100;
export const PAGE_MAX_LIMIT = 1000;
/** A page stops before the task whose entries (as sent) would take it past this many bytes (one task at least). */
export const PAGE_MAX_BYTES = 4 * 1024 * 1024;
/**
 * A task's payload is shown composed (its job's base merged in) in `/tasks` and `/results` up to
 * this many bytes; a larger one shows only the task's own part, with `payload_composed: false`.
 */
export const SHOWN_PAYLOAD_MAX_BYTES = 1 << 20;
/** `/output`: the last bytes of each task's log, by default and at most. */
export const OUTPUT_DEFAULT_TAIL = 1 << 20;
export const OUTPUT_MAX_TAIL = 64 << 20;

/** Which tasks a page holds: from the task with index `cursor` on. */
export interface PageRequest {
  cursor: number;
  limit: number;
  maxBytes: number;
}

/** Every task at once: for the server's own reads (a dependency's results), never for HTTP. */
export const WHOLE_JOB: PageRequest = { cursor: 0, limit: Number.MAX_SAFE_INTEGER, maxBytes: Number.POSITIVE_INFINITY };

/** The bytes of `value` as JSON in UTF-8: what a page entry costs when sent. */
export function sentBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? 'null');
}
