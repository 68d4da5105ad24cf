import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ControlStore, DaemonControlClient, DaemonControlServer, type ControlState, type DaemonStatusReport } from '../../src/daemon/control.js';
import { defaultDaemonDataDir, prepareDaemonDataDir } from '../../src/daemon/data-dir.js';
import { isCycleError } from '../../src/errors.js';
import { fixedClock } from '../helpers/context.js';
import { tempDir } from '../helpers/temp.js';

const report: DaemonStatusReport = {
  name: 'gpu-a',
  api_url: 'https://queue.example:8443',
  state: 'idle',
  slots: 1,
  running: [{ job_id: 'job_1', task_id: 'task_1', started_at: '2026-11-23T11:59:00Z' }],
  last_heartbeat_at: '2026-11-23T11:59:58Z',
  server_ok: true,
  last_error: null,
  inventory: null,
  activity: null,
};

async function startDaemon(dataDir: string, onChange?: (state: ControlState) => void) {
  const clock = fixedClock();
  const server = await DaemonControlServer.start({ dataDir, clock, status: () => report, ...(onChange ? { onChange } : {}) });
  return { server, clock };
}

async function rejection(promise: Promise<unknown>): Promise<{ message: string; hint?: string; exitCode?: number }> {
  try {
    await promise;
  } catch (error) {
    if (isCycleError(error)) return { message: error.message, ...(error.hint ? { hint: error.hint } : {}), exitCode: error.exitCode };
    throw error;
  }
  throw new Error('expected a rejection');
}

describe('the daemon control socket', () => {
  it('is owner-only: 0600 socket in a 0700 folder', async () => {
    const dataDir = path.join(await tempDir(), 'daemon');
    const { server } = await startDaemon(dataDir);
    try {
      expect((await fs.stat(dataDir)).mode & 0o777).toBe(0o700);
      const socket = await fs.stat(path.join(dataDir, 'control.sock'));
      expect(socket.isSocket()).toBe(true);
      expect(socket.mode & 0o777).toBe(0o600);
    } finally {
      await server.close();
    }
    await expect(fs.stat(path.join(dataDir, 'control.sock'))).rejects.toThrow(/ENOENT/);
  });

  it('round trips: status, pause, resume, forbid-busy-assign; the listener hears each change', async () => {
    const dataDir = await tempDir();
    const changes: ControlState[] = [];
    const { server } = await startDaemon(dataDir, (state) => changes.push(state));
    try {
      const client = new DaemonControlClient(dataDir);
      const status = await client.status();
      expect(status).toMatchObject({ ...report, paused_until: null, forbid_busy_assign: true, pid: process.pid, data_dir: dataDir });
      const until = new Date(Date.parse('2026-11-23T14:00:00Z'));
      expect((await client.pause(until)).paused_until).toBe('2026-11-23T14:00:00.000Z');
      expect(server.state().paused_until).toBe('2026-11-23T14:00:00.000Z');
      expect((await client.setForbidBusyAssign(false)).forbid_busy_assign).toBe(false);
      expect((await client.resume()).paused_until).toBeNull();
      expect(changes).toEqual([
        { paused_until: '2026-11-23T14:00:00.000Z', forbid_busy_assign: true },
        { paused_until: '2026-11-23T14:00:00.000Z', forbid_busy_assign: false },
        { paused_until: null, forbid_busy_assign: false },
      ]);
      await client.resume(); // no change: not heard
      expect(changes).toHaveLength(3);
    } finally {
      await server.close();
    }
  });

  it('a pause survives a restart (control.json, written atomically, 0600)', async () => {
    const dataDir = await tempDir();
    const first = await startDaemon(dataDir);
    await new DaemonControlClient(dataDir).pause(new Date(Date.parse('2026-11-23T20:00:00Z')));
    await first.server.close();
    const file = path.join(dataDir, 'control.json');
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    const second = await startDaemon(dataDir);
    try {
      expect(second.server.state()).toEqual({ paused_until: '2026-11-23T20:00:00.000Z', forbid_busy_assign: true });
    } finally {
      await second.server.close();
    }
  });

  it('a pause that has ended reads as not paused', async () => {
    const dataDir = await tempDir();
    const clock = fixedClock();
    const store = await ControlStore.open(dataDir, clock);
    await store.pause(new Date(clock.now() + 60_000));
    expect(store.state().paused_until).not.toBeNull();
    clock.advance(60_000);
    expect(store.state().paused_until).toBeNull();
  });

  it('refuses a pause in the past or over a year, saying so', async () => {
    const dataDir = await tempDir();
    const { server, clock } = await startDaemon(dataDir);
    try {
      const client = new DaemonControlClient(dataDir);
      expect((await rejection(client.pause(new Date(clock.now() - 1)))).message).toMatch(/the cycle daemon refused: a pause must end in the future/);
      expect((await rejection(client.pause(new Date(clock.now() + 400 * 86_400_000)))).message).toMatch(/at most 366 days/);
      expect(server.state().paused_until).toBeNull();
    } finally {
      await server.close();
    }
  });

  it('answers a malformed request with an error line, and keeps serving', async () => {
    const dataDir = await tempDir();
    const { server } = await startDaemon(dataDir);
    try {
      const answers = await new Promise<string>((resolve, reject) => {
        const socket = net.createConnection(path.join(dataDir, 'control.sock'));
        let text = '';
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => {
          text += chunk;
          if (text.split('\n').length > 3) {
            socket.end();
            resolve(text);
          }
        });
        socket.on('error', reject);
        socket.write('not json\n{"op":"reboot"}\n{"op":"status"}\n');
      });
      const [first, second, third] = answers
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(first).toEqual({ ok: false, error: 'not a control request: expected one JSON object per line' });
      expect(second.ok).toBe(false);
      expect(third).toMatchObject({ ok: true, status: { name: 'gpu-a' } });
    } finally {
      await server.close();
    }
  });

  it('a stale socket file from a crashed daemon is replaced', async () => {
    const dataDir = await tempDir();
    await fs.chmod(dataDir, 0o700);
    // What a kill -9 leaves: a socket file nobody listens on, and a lock naming a dead pid.
    const child = spawn(
      process.execPath,
      ['-e', `require('net').createServer().listen(${JSON.stringify(path.join(dataDir, 'control.sock'))}, () => console.log('up'))`],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    expect((await fs.stat(path.join(dataDir, 'control.sock'))).isSocket()).toBe(true);
    await fs.writeFile(path.join(dataDir, 'daemon.lock'), '2147483646\n');
    await expect(new DaemonControlClient(dataDir).status()).rejects.toThrow(/no cycle daemon is running/);
    const { server } = await startDaemon(dataDir);
    try {
      expect((await new DaemonControlClient(dataDir).status()).name).toBe('gpu-a');
    } finally {
      await server.close();
    }
  });

  it('a second daemon on the same data folder is refused, naming the first', async () => {
    const dataDir = await tempDir();
    const { server } = await startDaemon(dataDir);
    try {
      const error = await rejection(startDaemon(dataDir));
      expect(error.message).toBe(`another cycle daemon (pid ${process.pid}) is running on the data folder ${dataDir}`);
      expect(error.hint).toMatch(/cycle daemon status --data-dir/);
      expect((await new DaemonControlClient(dataDir).status()).name).toBe('gpu-a'); // the first still answers
    } finally {
      await server.close();
    }
  });

  it('no daemon: a clear error naming the data folder and how to start one (exit 5)', async () => {
    const dataDir = await tempDir();
    const error = await rejection(new DaemonControlClient(dataDir).status());
    expect(error.message).toBe(`no cycle daemon is running for the data folder ${dataDir} (no control socket ${path.join(dataDir, 'control.sock')})`);
    expect(error.hint).toBe(`start one: cycle daemon run --api-url URL --name NAME --data-dir ${dataDir} (or pass the --data-dir the daemon was started with)`);
    expect(error.exitCode).toBe(5);
  });
});

describe('the daemon data folder', () => {
  it('defaults to $XDG_DATA_HOME/cycle/daemon, else ~/.local/share/cycle/daemon', () => {
    expect(defaultDaemonDataDir({ XDG_DATA_HOME: '/x', HOME: '/home/a' })).toBe('/x/cycle/daemon');
    expect(defaultDaemonDataDir({ XDG_DATA_HOME: 'relative', HOME: '/home/a' })).toBe('/home/a/.local/share/cycle/daemon');
    expect(defaultDaemonDataDir({ HOME: '/home/a' })).toBe('/home/a/.local/share/cycle/daemon');
  });

  it('a group- or world-writable folder is refused with the fix', async () => {
    const dataDir = await tempDir();
    await fs.chmod(dataDir, 0o777);
    const error = await rejection(prepareDaemonDataDir(dataDir));
    expect(error.message).toBe(`the daemon's data folder ${dataDir} is writable by others (mode 0777): anyone who can write there could steer this daemon`);
    expect(error.hint).toBe(`make it owner-only: chmod 700 ${dataDir}`);
    await fs.chmod(dataDir, 0o770);
    await expect(DaemonControlServer.start({ dataDir, status: () => report })).rejects.toThrow(/writable by others \(mode 0770\)/);
  });

  it('a readable-by-others folder is made owner-only', async () => {
    const dataDir = await tempDir();
    await fs.chmod(dataDir, 0o755);
    await prepareDaemonDataDir(dataDir);
    expect((await fs.stat(dataDir)).mode & 0o777).toBe(0o700);
  });

  it('a link in place of the folder is refused', async () => {
    const root = await tempDir();
    await fs.mkdir(path.join(root, 'real'), { mode: 0o700 });
    await fs.symlink(path.join(root, 'real'), path.join(root, 'link'));
    expect((await rejection(prepareDaemonDataDir(path.join(root, 'link')))).message).toMatch(/is not a folder \(a link or a file is there\)/);
  });
});

describe('the daemon room', () => {
  it('imports nothing of server/ (a daemon runs where no server is)', async () => {
    const dir = path.join(import.meta.dirname, '..', '..', 'src', 'daemon');
    const offenders: string[] = [];
    for (const file of await fs.readdir(dir)) {
      const text = await fs.readFile(path.join(dir, file), 'utf8');
      for (const match of text.matchAll(/from '([^']+)'/g)) if (match[1]!.includes('/server/')) offenders.push(`${file}: ${match[1]}`);
    }
    expect(offenders).toEqual([]);
  });
});
