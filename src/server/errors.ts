import type * as z from 'zod';

/**
 * What the server's services throw when a request cannot be done: the domain's words (what is
 * wrong, with which field), never an HTTP status. The HTTP layer maps each kind to a status in
 * one table (`STATUS_OF_PROBLEM` in http/router.ts) and writes the error body; a worker or a test reads
 * the kind. `code` is the machine-readable code of the platform's error body (`invalid_job`,
 * `not_found`, ...), kept as the API documents it.
 */
export type ProblemKind =
  /** The request cannot be read (bad JSON, a wrong type, an unknown key). */
  | 'malformed'
  /** Readable, but breaks a rule (a field's value, a combination of fields). */
  | 'invalid'
  | 'not-found'
  /** It existed and is gone for good (an expired upload). */
  | 'gone'
  /** It clashes with what is there (a name in use, a state that does not allow it). */
  | 'conflict'
  | 'payment-required'
  | 'too-large'
  | 'unsupported-media-type'
  /** A disk quota of the server is used up. */
  | 'insufficient-storage'
  /** The server cannot take it now: retry later. */
  | 'unavailable'
  | 'unauthorized'
  /** The request was fine but the server failed at it (a disk error): the message says what failed. */
  | 'failed';

export class DomainError extends Error {
  override readonly name = 'DomainError';

  constructor(
    readonly kind: ProblemKind,
    readonly code: string,
    message: string,
    /** The request field at fault, as a dotted path (`payload.grid.lr`). */
    readonly field?: string,
    /** Fields answered beside the error (a 402's `quote`, a limit's size). */
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** A field's value breaks a rule (422 on HTTP). */
export function invalid(code: string, message: string, field?: string, extra?: Record<string, unknown>): DomainError {
  return new DomainError('invalid', code, message, field, extra);
}

/** The request cannot be read as the route expects (400 on HTTP). */
export function malformed(code: string, message: string, field?: string): DomainError {
  return new DomainError('malformed', code, message, field);
}

export function notFound(message: string, field?: string): DomainError {
  return new DomainError('not-found', 'not_found', message, field);
}

export function tooLarge(code: string, message: string, field?: string, extra?: Record<string, unknown>): DomainError {
  return new DomainError('too-large', code, message, field, extra);
}

/** It existed and is gone for good (410 on HTTP). */
export function gone(code: string, message: string, field?: string): DomainError {
  return new DomainError('gone', code, message, field);
}

/** The account's balance does not cover the work (402 on HTTP); `quote` is answered beside the error. */
export function paymentRequired(message: string, quote: unknown): DomainError {
  return new DomainError('payment-required', 'payment_required', message, undefined, { quote });
}

/** The server cannot take it now; the client may retry later (503 on HTTP). */
export function unavailable(code: string, message: string): DomainError {
  return new DomainError('unavailable', code, message);
}

/**
 * A request body that zod refused, as one error naming the first field at fault and listing every
 * problem. A wrong type or an unknown key means the body cannot be read as the route expects
 * (malformed); any other issue is a value that breaks a rule (invalid).
 */
export function zodError(error: z.ZodError): DomainError {
  const issue = error.issues[0]!;
  const field = issue.path.join('.');
  const problems = error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; ');
  const kind: ProblemKind = issue.code === 'unrecognized_keys' || issue.code === 'invalid_type' ? 'malformed' : 'invalid';
  return new DomainError(kind, 'invalid_request', problems, field || undefined);
}
