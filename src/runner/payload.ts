import fs from 'node:fs/promises';
import { readAll } from '../ui/streams.js';
import path from 'node:path';
import { CycleError, ExitCode, errnoCode } from '../errors.js';
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
    throw new CycleError({ message: `${flag} ${value}: ${reason} (${file})`, hint: 'pass an existing file after @, the value itself, or - for stdin', exitCode: ExitCode.usage });
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
