import fs from 'node:fs/promises';
import { readAll } from '../ui/streams.js';
import path from 'node:path';
import { CycleError, ExitCode, errnoCode } from '../errors.js';
import type { InStream } from '../ui/streams.js';
import { LineIndex } from '../project/positions.js';

/**
 * Reads a JSON value given as `JSON`, `@file` or `-` (stdin), for --payload and friends.
 * Bad JSON names the flag and the line and column of the problem.
 */
export async function readJsonArgument(flag: string, value: string, options: { cwd: string; stdin: InStream }): Promise<unknown> {
  let text: string;
  let source: string;
  if (value === '-') {
    text = await readAll(options.stdin);
    source = `${flag} - (stdin)`;
  } else if (value.startsWith('@')) {
    const file = path.resolve(options.cwd, value.slice(1));
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (error) {
      const reason = errnoCode(error) === 'ENOENT' ? 'no such file' : (error as Error).message;
      throw new CycleError({ message: `${flag} ${value}: ${reason} (${file})`, hint: `pass an existing JSON file after @, inline JSON, or - for stdin`, exitCode: ExitCode.usage });
    }
    source = `${flag} ${value}`;
  } else {
    text = value;
    source = flag;
  }
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
