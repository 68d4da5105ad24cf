import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DaemonControlClient, DaemonControlServer, type DaemonStatusReport } from '../../src/daemon/control.js';
import { tempDir } from '../helpers/context.js';

/** Issue 20, the daemon's control socket: only its owner steers the daemon; hostile input leaves it serving. */

const report: DaemonStatusReport = {
  name: 'gpu-a',
  api_url: 'https://queue.example',
  state: 'idle',
  slots: 1,
  running: [],
  last_heartbeat_at: null,
  server_ok: true,
  last_error: null,
  inventory: null,
  activity: null,
};

async function daemon(dataDir: string): Promise<DaemonControlServer> {
  return DaemonControlServer.start({ dataDir, status: () => report });
}

/** Sends raw bytes on the control socket and reads what comes back until the daemon closes it or a line arrives. */
function raw(socketPath: string, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('\n')) {
        socket.destroy();
        resolve(text);
      }
    });
    socket.on('close', () => resolve(text));
    socket.on('error', (error) =>
      (error as NodeJS.ErrnoException).code === 'EPIPE' || (error as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve(text) : reject(error),
    );
    socket.write(bytes);
  });
}

describe('the daemon control socket against other users and hostile input', () => {
  it('another user cannot reach it (0600 socket, 0700 folder)', async () => {
    const dataDir = path.join(await tempDir(), 'daemon');
    const server = await daemon(dataDir);
    try {
      expect((await fs.stat(path.join(dataDir, 'control.sock'))).mode & 0o777).toBe(0o600);
      expect((await fs.stat(dataDir)).mode & 0o777).toBe(0o700);
      // Where this test may switch users (root), a process of `nobody` tries for real.
      if (process.getuid?.() === 0) {
        const attempt = spawn(
          process.execPath,
          [
            '-e',
            `const s=require('net').createConnection(${JSON.stringify(path.join(dataDir, 'control.sock'))});s.on('connect',()=>{console.log('CONNECTED');process.exit(0)});s.on('error',e=>{console.log(e.code);process.exit(1)})`,
          ],
          { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'inherit'] },
        );
        let out = '';
        attempt.stdout.on('data', (chunk) => (out += chunk));
        const code = await new Promise((resolve) => attempt.once('exit', resolve));
        expect(out.trim()).toBe('EACCES');
        expect(code).toBe(1);
      }
    } finally {
      await server.close();
    }
  });

  it('an endless request line is refused and the daemon keeps serving', async () => {
    const dataDir = await tempDir();
    const server = await daemon(dataDir);
    try {
      const answer = await raw(path.join(dataDir, 'control.sock'), 'x'.repeat(200 * 1024));
      expect(answer).toContain('a control request is at most 65536 bytes');
      // The same with its newline: a line over the cap is not parsed either.
      expect(await raw(path.join(dataDir, 'control.sock'), `{"op":"status","pad":"${'x'.repeat(100 * 1024)}"}\n`)).toContain(
        'a control request is at most 65536 bytes',
      );
      expect((await new DaemonControlClient(dataDir).status()).name).toBe('gpu-a');
    } finally {
      await server.close();
    }
  });

  it('control.json as a link: a pause replaces the link, never writes through it', async () => {
    const dataDir = await tempDir();
    const victim = path.join(await tempDir(), 'victim.txt');
    await fs.writeFile(victim, 'keep me\n');
    await fs.symlink(victim, path.join(dataDir, 'control.json'));
    const server = await daemon(dataDir);
    try {
      expect(server.state()).toEqual({ paused_until: null, forbid_busy_assign: true }); // unreadable state: the default
      await new DaemonControlClient(dataDir).pause(new Date(Date.now() + 3_600_000));
      expect(await fs.readFile(victim, 'utf8')).toBe('keep me\n');
      expect((await fs.lstat(path.join(dataDir, 'control.json'))).isSymbolicLink()).toBe(false);
    } finally {
      await server.close();
    }
  });

  it('a request with extra fields or a wrong op changes nothing', async () => {
    const dataDir = await tempDir();
    const server = await daemon(dataDir);
    try {
      const socketPath = path.join(dataDir, 'control.sock');
      expect(JSON.parse(await raw(socketPath, '{"op":"pause","until":"not a time"}\n')).ok).toBe(false);
      expect(JSON.parse(await raw(socketPath, '{"op":"forbid-busy-assign","value":"false"}\n')).ok).toBe(false);
      expect(JSON.parse(await raw(socketPath, '{"op":"status","__proto__":{"ok":false}}\n')).ok).toBe(true);
      expect(server.state()).toEqual({ paused_until: null, forbid_busy_assign: true });
    } finally {
      await server.close();
    }
  });
});
