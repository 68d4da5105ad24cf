/** The smallest stream shapes cycle needs, so tests can pass plain objects. */
export interface OutStream {
  write(chunk: string | Uint8Array): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface InStream extends AsyncIterable<Buffer | string> {
  isTTY?: boolean;
}

export interface IO {
  stdout: OutStream;
  stderr: OutStream;
  stdin: InStream;
}

export type Env = Record<string, string | undefined>;

/** Colour is on only for a TTY, and never with NO_COLOR, CI, TERM=dumb or --no-color. */
export function colorEnabled(stream: OutStream, env: Env, flag: boolean | undefined): boolean {
  if (flag === false) return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false') return true;
  if (env.CI !== undefined && env.CI !== '' && env.CI !== '0' && env.CI !== 'false') return false;
  if (env.TERM === 'dumb') return false;
  return stream.isTTY === true;
}

/** Spinners, live progress lines and prompts: only for a person at a terminal. */
export function interactiveEnabled(io: IO, env: Env): boolean {
  if (env.CI !== undefined && env.CI !== '' && env.CI !== '0' && env.CI !== 'false') return false;
  if (env.TERM === 'dumb') return false;
  return io.stderr.isTTY === true && io.stdin.isTTY === true;
}

/** All of an input stream as text (`--payload -`, `--with-token`). */
export async function readAll(stream: InStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}
