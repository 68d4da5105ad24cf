import { HttpError } from './router.js';
import { PAGE_DEFAULT_LIMIT, PAGE_MAX_BYTES, PAGE_MAX_LIMIT, type PageRequest } from '../jobs.js';

/*
 * Query-string parsing of the paged routes: the HTTP layer reads `?limit=&cursor=` into the plain
 * values the services take (a PageRequest, a number); a bad one is answered 400 naming the parameter.
 */

/** `?limit=&cursor=` of a paged route; a bad one is a 400 naming the parameter. */
export function pageRequest(query: URLSearchParams): PageRequest {
  const limit = intParam(query, 'limit', { min: 1, max: PAGE_MAX_LIMIT, fallback: PAGE_DEFAULT_LIMIT });
  const cursor = query.get('cursor');
  if (cursor !== null && !/^\d{1,9}$/.test(cursor))
    throw new HttpError(400, 'invalid_request', `cursor must be the next_cursor of a previous page, got "${cursor.slice(0, 40)}"`, 'cursor');
  return { cursor: cursor === null ? 0 : Number(cursor), limit, maxBytes: PAGE_MAX_BYTES };
}

/** An integer query parameter in a range; missing: the fallback; anything else: a 400 naming it. */
export function intParam(query: URLSearchParams, name: string, range: { min: number; max: number; fallback: number }): number {
  const text = query.get(name);
  if (text === null) return range.fallback;
  const value = Number(text);
  if (!/^\d{1,15}$/.test(text) || value < range.min || value > range.max) {
    throw new HttpError(400, 'invalid_request', `${name} must be an integer from ${range.min} to ${range.max}, got "${text.slice(0, 40)}"`, name);
  }
  return value;
}

/** A list of task indexes (`?tasks=3,17,42`), 1 to `max` of them; anything else is a 400 naming the parameter. */
export function indexListParam(query: URLSearchParams, name: string, max: number): number[] {
  const text = query.get(name) ?? '';
  const parts = text.split(',');
  if (!/^\d{1,9}(,\d{1,9})*$/.test(text) || parts.length > max)
    throw new HttpError(400, 'invalid_request', `${name} must be 1 to ${max} task indexes separated by commas (e.g. 0,5,12), got "${text.slice(0, 40)}"`, name);
  return parts.map(Number);
}
