/**
 * Readers of command-line arguments: `@file` / `-` / inline values, JSON with positions,
 * shell words, durations, KEY=VALUE pairs. Each names the flag at fault in its message.
 */
import fs from 'node:fs/promises';
import { readAll } from '../ui/streams.js';
import path from 'node:path';
import { CycleError, ExitCode, errnoCode, usageError } from '../errors.js';
import type { InStream } from '../ui/streams.js';
import { LineIndex } from '../project/positions.js';

/**
 * The text an argument stands for: `@file`, `-` (stdin), or the value itself; `source` names it
 * for messages. A missing file is a usage error naming the flag.
 */
export async function readArgumentText(flag: string, value: string, options: { cwd: string; stdin: InStream }): Promise<{ text: string; source: string }> {
  if (value === '-') return { text: await readAll(options.stdin), source: `${flag} - (stdin)` };
  if (!value.startsWith('@')) return { text: value, source: flag };
  const file = path.resolve(options.cwd, value.slice(1));
  try {
    return { text: await fs.readFile(file, 'utf8'), source: `${flag} ${value}` };
  } catch (error) {
    const reason = errnoCode(error) === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new CycleError({
      message: `${flag} ${value}: ${reason} (${file})`,
      hint: 'pass an existing file after @, the value itself, or - for stdin',
      exitCode: ExitCode.usage,
    });
  }
}

/**
 * Reads a JSON value given as `JSON`, `@file` or `-` (stdin), for --payload and friends.
 * Bad JSON names the flag and the line and column of the problem.
 */
export async function readJsonArgument(flag: string, value: string, options: { cwd: string; stdin: InStream }): Promise<unknown> {
  const { text, source } = await readArgumentText(flag, value, options);
  return parseJsonText(text, source);
}

export function parseJsonText(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message;
    const position = /position (\d+)/.exec(message);
    const at = position ? new LineIndex(text).at(Number(position[1])) : undefined;
    const reason = message.replace(/^(Unexpected token .*?|Unexpected end of JSON input|Expected .*?)(,| in JSON at position \d+| at position \d+).*$/s, '$1');
    throw new CycleError({
      message: `${source} is not valid JSON: ${reason}${at ? ` at line ${at.line}, column ${at.column}` : ''}`,
      hint: `quote keys and strings with double quotes, e.g. ${flagExample(source)}`,
      exitCode: ExitCode.usage,
    });
  }
}

function flagExample(source: string): string {
  const flag = source.split(' ')[0] ?? '--payload';
  return `${flag} '{"steps": 3}'`;
}

/** Splits a command line like a POSIX shell would (quotes and backslashes), without expanding anything. */
export function shellWords(text: string, flag: string): string[] {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quote === "'") {
      if (ch === "'") quote = undefined;
      else current += ch;
    } else if (quote === '"') {
      if (ch === '"') quote = undefined;
      else if (ch === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1]!)) current += text[++i];
      else current += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === '\\' && i + 1 < text.length) {
      current += text[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      current += ch;
      inWord = true;
    }
  }
  if (quote) throw usageError(`${flag}: unterminated ${quote} quote in ${JSON.stringify(text)}`);
  if (inWord) words.push(current);
  if (words.length === 0) throw usageError(`${flag}: empty command`, `e.g. ${flag} "python3 eval.py"`);
  return words;
}

/** "600", "90s", "10m", "1h30m" → seconds. */
export function parseDuration(text: string, flag: string): number {
  if (/^\d+$/.test(text)) return Number(text);
  const match = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(text);
  if (!match || text === '') throw usageError(`${flag} ${text}: expected seconds or a duration like 90s, 10m, 1h30m`);
  return Number(match[1] ?? 0) * 3600 + Number(match[2] ?? 0) * 60 + Number(match[3] ?? 0);
}

/** "gpu=1,storage_gb=40" → {gpu: 1, storage_gb: 40} */
export function parseRequirements(text: string, flag: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const part of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [key, value] = part.split('=');
    if (!key || value === undefined || value.trim() === '' || !Number.isFinite(Number(value)))
      throw usageError(`${flag} ${text}: expected KEY=NUMBER pairs, e.g. gpu=1,storage_gb=40`);
    out[key.trim()] = Number(value);
  }
  return out;
}

/** "k=v" pairs; a value that is JSON (number, true, {...}) is kept as such, otherwise a string. */
export function parseKeyValues(pairs: readonly string[], flag: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw usageError(`${flag} ${pair}: expected KEY=VALUE`);
    const raw = pair.slice(eq + 1);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      value = raw;
    }
    out[pair.slice(0, eq)] = value;
  }
  return out;
}

export function positiveInteger(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw usageError(`${flag} ${text}: expected a positive whole number`);
  return n;
}
