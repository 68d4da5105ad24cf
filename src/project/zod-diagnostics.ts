import type { z } from 'zod';
import { diagnostic, type Diagnostic, type Severity } from './diagnostics.js';
import type { FieldPath, PositionMap } from './positions.js';
import { suggest } from '../util/suggest.js';

/** What a field accepts, in words, and how to fix a wrong value. */
export interface FieldDoc {
  expected: string;
  /** A valid value to show in "add …" when the field is missing (else one by its type). */
  example?: string;
  fix?: (raw: unknown) => string | undefined;
}

export interface IssueContext {
  file: string;
  positions: PositionMap;
  /** The parsed document, to show the value that was wrong. */
  root: unknown;
  /** Field documentation by path; numbers in paths are array indexes. */
  docFor(path: FieldPath): FieldDoc | undefined;
  /** The rule for a bad key of a record (an env var name). */
  keyDocFor?(path: FieldPath): FieldDoc | undefined;
  /** The keys allowed in the object at `path`, for "did you mean". */
  keysFor(path: FieldPath): readonly string[];
  /** How a value's type is called in this file format (TOML: integer, table; JSON: number, object). */
  typeName(value: unknown): string;
  /** How to write `key = value` in this file format, for fixes. */
  assignment(key: string, example: string): string;
  /** How to name the table/object at `path` in this file format: `[job]`, `"runtime"`. */
  container(path: FieldPath): string;
  unknownKeySeverity?: (path: FieldPath) => Severity;
}

export function valueAt(root: unknown, path: FieldPath): unknown {
  let current: unknown = root;
  for (const part of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string | number, unknown>)[part];
  }
  return current;
}

export function preview(value: unknown): string {
  const text = JSON.stringify(value instanceof Date ? value.toISOString() : value);
  if (text === undefined) return String(value);
  return text.length > 40 ? text.slice(0, 39) + '…' : text;
}

/** Turns every zod issue into a diagnostic with a position, what was expected and a fix. */
export function issuesToDiagnostics(issues: readonly z.core.$ZodIssue[], ctx: IssueContext): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const issue of issues) {
    const path = issue.path as FieldPath;
    const raw = valueAt(ctx.root, path);
    const doc = ctx.docFor(path);
    const key = path.length > 0 ? String(path[path.length - 1]) : '';
    switch (issue.code) {
      case 'unrecognized_keys': {
        const allowed = ctx.keysFor(path);
        for (const unknownKey of issue.keys) {
          const keyPath = [...path, unknownKey];
          const hit = suggest(unknownKey, allowed);
          const where = path.length === 0 ? 'at the top level' : `in ${ctx.container(path)}`;
          out.push(
            diagnostic(
              ctx.unknownKeySeverity?.(keyPath) ?? 'error',
              ctx.file,
              ctx.positions.keyOf(keyPath),
              keyPath,
              `unknown field \`${unknownKey}\` ${where}`,
              hit !== undefined ? `did you mean \`${hit}\`?` : `allowed fields: ${allowed.map((k) => `\`${k}\``).join(', ')}`,
            ),
          );
        }
        break;
      }
      case 'invalid_type': {
        if (raw === undefined) {
          const parent = path.slice(0, -1);
          out.push(
            diagnostic(
              'error',
              ctx.file,
              ctx.positions.keyOf(parent),
              path,
              `missing required field \`${key}\`; expected ${doc?.expected ?? issue.expected}`,
              `add ${ctx.assignment(key, doc?.example ?? exampleFor(issue.expected))}${parent.length ? ` to ${ctx.container(parent)}` : ''}`,
            ),
          );
          break;
        }
        const expected = doc?.expected ?? article(issue.expected);
        out.push(
          diagnostic(
            'error',
            ctx.file,
            ctx.positions.valueOf(path),
            path,
            `expected ${expected}, got ${article(ctx.typeName(raw))} ${preview(raw)}`,
            doc?.fix?.(raw) ?? typeFix(issue.expected, raw, key, ctx),
          ),
        );
        break;
      }
      case 'invalid_key': {
        const badKey = key;
        const keyDoc = ctx.keyDocFor?.(path);
        out.push(
          diagnostic(
            'error',
            ctx.file,
            ctx.positions.keyOf(path),
            path,
            `${JSON.stringify(badKey)} is not a valid name; expected ${keyDoc?.expected ?? 'a valid key'}`,
            keyDoc?.fix?.(badKey),
          ),
        );
        break;
      }
      default: {
        const expected = doc?.expected ?? issue.message;
        out.push(
          diagnostic(
            'error',
            ctx.file,
            ctx.positions.valueOf(path),
            path,
            `expected ${expected}, got ${article(ctx.typeName(raw))} ${preview(raw)}`,
            doc?.fix?.(raw) ?? enumFix(issue, raw),
          ),
        );
      }
    }
  }
  return out;
}

function enumFix(issue: z.core.$ZodIssue, raw: unknown): string | undefined {
  if (issue.code !== 'invalid_value' || typeof raw !== 'string') return undefined;
  const values = issue.values.map(String);
  const hit = suggest(raw, values);
  return hit !== undefined ? `did you mean ${JSON.stringify(hit)}?` : `use one of ${values.map((v) => JSON.stringify(v)).join(', ')}`;
}

function typeFix(expected: string, raw: unknown, key: string, ctx: IssueContext): string | undefined {
  if (expected === 'string' && (typeof raw === 'number' || typeof raw === 'boolean')) {
    return `quote the value: ${ctx.assignment(key, JSON.stringify(String(raw)))}`;
  }
  if (expected === 'boolean' && typeof raw === 'string' && /^(true|false)$/i.test(raw)) {
    return `write it without quotes: ${ctx.assignment(key, raw.toLowerCase())}`;
  }
  if (expected === 'array' && typeof raw === 'string') return `make it a list: ${ctx.assignment(key, `[${JSON.stringify(raw)}]`)}`;
  return undefined;
}

function exampleFor(expected: string): string {
  switch (expected) {
    case 'boolean':
      return 'false';
    case 'string':
      return '"…"';
    case 'array':
      return '[]';
    case 'number':
      return '1';
    default:
      return '…';
  }
}

function article(word: string): string {
  return /^[aeiou]/.test(word) ? `an ${word}` : `a ${word}`;
}
