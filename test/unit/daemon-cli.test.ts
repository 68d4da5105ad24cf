import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DaemonControlServer, type DaemonStatusReport } from '../../src/daemon/control.js';
import { systemdQuote, systemdUnit } from '../../src/daemon/unit.js';
import { fixedClock, runCycle, tempDir } from '../helpers/context.js';

const NOW = Date.parse('2026-11-23T12:00:00Z');

const report: DaemonStatusReport = {
  name: 'gpu-b',
  api_url: 'https://queue.example:8443',
  state: 'busy',
  slots: 2,
  running: [{ job_id: 'job_9', task_id: 'task_3', started_at: '2026-11-23T11:58:00Z' }],
  last_heartbeat_at: '2026-11-23T11:59:59Z',
  server_ok: true,
  last_error: null,
  inventory: {
    cpus: 16,
    memory_bytes: 64 * 1024 ** 3,
    free_disk_bytes: 200 * 1024 ** 3,
    gpus: [{ index: 0, name: 'NVIDIA A100-SXM4-40GB', memory_mib: 40960 }],
    driver: '550.144.03',
    cuda: '12.4',
    docker: true,
    gvisor: true,
  },
  activity: { idle: false, busy_reasons: ['non-job CPU 37 % > 5 %'], paused_until: null, forbid_busy_assign: true },
};

/** A daemon's control socket in a temp data folder (the daemon's status is a fixed report). */
async function withDaemon(test: (dataDir: string, cwd: string) => Promise<void>): Promise<void> {
  const cwd = await tempDir();
  const dataDir = path.join(cwd, 'daemon-data');
  const server = await DaemonControlServer.start({ dataDir, clock: fixedClock(NOW), status: () => report });
  try {
    await test(dataDir, cwd);
  } finally {
    await server.close();
  }
}

describe('cycle daemon status|pause|resume|forbid-busy-assign|allow-busy-assign', () => {
  it('status: the daemon in words, and --json', async () => {
    await withDaemon(async (dataDir, cwd) => {
      const text = await runCycle(['daemon', 'status', '--data-dir', dataDir], { cwd });
      expect(text.code).toBe(0);
      expect(text.stdout).toContain(`daemon gpu-b (pid ${process.pid}, data ${dataDir}) → https://queue.example:8443`);
      expect(text.stdout).toContain('activity: busy: non-job CPU 37 % > 5 %');
      expect(text.stdout).toContain('runs job_9 / task_3 since 2026-11-23T11:58:00Z');
      expect(text.stdout).toContain('GPUs: 0: NVIDIA A100-SXM4-40GB (40960 MiB); driver 550.144.03, CUDA 12.4');
      const json = await runCycle(['daemon', 'status', '--data-dir', dataDir, '--json'], { cwd });
      expect(JSON.parse(json.stdout)).toMatchObject({ name: 'gpu-b', paused_until: null, forbid_busy_assign: true, slots: 2, data_dir: dataDir });
    });
  });

  it('--data-dir relative to the working folder; the default is $XDG_DATA_HOME/cycle/daemon', async () => {
    await withDaemon(async (_dataDir, cwd) => {
      expect((await runCycle(['daemon', 'status', '--data-dir', 'daemon-data'], { cwd })).code).toBe(0);
      const other = await runCycle(['daemon', 'status'], { cwd, env: { XDG_DATA_HOME: path.join(cwd, 'xdg') } });
      expect(other.code).toBe(5);
      expect(other.stderr).toContain(`no cycle daemon is running for the data folder ${path.join(cwd, 'xdg', 'cycle', 'daemon')}`);
      expect(other.stderr).toContain('hint: start one: cycle daemon run --api-url URL --name NAME');
    });
  });

  it('pause: 8 hours by default, a duration when given; resume ends it', async () => {
    await withDaemon(async (dataDir, cwd) => {
      const byDefault = await runCycle(['daemon', 'pause', '--data-dir', dataDir, '--json'], { cwd, now: NOW });
      expect(byDefault.code).toBe(0);
      expect(JSON.parse(byDefault.stdout).paused_until).toBe('2026-11-23T20:00:00.000Z');
      const twoHours = await runCycle(['daemon', 'pause', '2h', '--data-dir', dataDir], { cwd, now: NOW });
      expect(twoHours.stderr).toContain('daemon gpu-b: paused for 2h00m, until 2026-11-23T14:00:00.000Z: takes no new task; what runs finishes');
      expect(twoHours.stdout).toContain('state: paused (until 2026-11-23T14:00:00.000Z)');
      expect(JSON.parse((await runCycle(['daemon', 'pause', '1h30m', '--data-dir', dataDir, '--json'], { cwd, now: NOW })).stdout).paused_until).toBe(
        '2026-11-23T13:30:00.000Z',
      );
      const resumed = await runCycle(['daemon', 'resume', '--data-dir', dataDir, '--json'], { cwd });
      expect(JSON.parse(resumed.stdout)).toMatchObject({ paused_until: null, state: 'busy' });
    });
  });

  it('pause refuses a bad duration before it asks the daemon (exit 2)', async () => {
    const cwd = await tempDir();
    for (const bad of ['3x', '0', '400d', '9000h']) {
      const result = await runCycle(['daemon', 'pause', bad, '--data-dir', path.join(cwd, 'none')], { cwd });
      expect(result.code, bad).toBe(2);
      expect(result.stderr).toMatch(/DURATION/);
    }
  });

  it('forbid-busy-assign and its undo allow-busy-assign', async () => {
    await withDaemon(async (dataDir, cwd) => {
      const allowed = await runCycle(['daemon', 'allow-busy-assign', '--data-dir', dataDir], { cwd });
      expect(allowed.code).toBe(0);
      expect(allowed.stdout).toContain('busy machines: keep their tasks and take more (allow-busy-assign)');
      const forbidden = await runCycle(['daemon', 'forbid-busy-assign', '--data-dir', dataDir, '--json'], { cwd });
      expect(JSON.parse(forbidden.stdout).forbid_busy_assign).toBe(true);
      expect(JSON.parse(await fs.readFile(path.join(dataDir, 'control.json'), 'utf8'))).toEqual({ paused_until: null, forbid_busy_assign: true });
    });
  });
});

describe('cycle daemon unit', () => {
  const input = {
    command: ['/usr/bin/node', '/opt/cycle/bin/cycle.js'],
    apiUrl: 'https://queue.example:8443',
    name: 'gpu-a',
    slots: 2,
    dataDir: '/home/ml/.local/share/cycle/daemon',
    environmentFile: '/etc/cycle/daemon-gpu-a.env',
    user: 'ml',
    insecure: false,
  };

  it('a simple service running `cycle daemon run`, the token from an environment file, restarted on failure', () => {
    const unit = systemdUnit(input);
    expect(unit).toContain('\nType=simple\n');
    expect(unit).toContain('\nUser=ml\n');
    expect(unit).toContain('\nEnvironmentFile=/etc/cycle/daemon-gpu-a.env\n');
    expect(unit).toContain(
      '\nExecStart=/usr/bin/node /opt/cycle/bin/cycle.js daemon run --api-url https://queue.example:8443 --name gpu-a --slots 2 --data-dir /home/ml/.local/share/cycle/daemon\n',
    );
    expect(unit).toContain('\nRestart=on-failure\n');
    expect(unit).toContain('\nWantedBy=multi-user.target\n');
    expect(unit).not.toMatch(/^[^#]*TOKEN=/m); // only the comment names it
  });

  it('quotes what systemd would split or expand', () => {
    expect(systemdQuote('/data/my dir', 'x')).toBe('"/data/my dir"');
    expect(systemdQuote('100%', 'x')).toBe('100%%');
    expect(systemdQuote('$HOME', 'x')).toBe('$$HOME');
    expect(systemdQuote('a"b\\c', 'x')).toBe('"a\\"b\\\\c"');
    expect(() => systemdQuote('a\nExecStartPre=/bin/evil', '--data-dir')).toThrow(/cannot hold a line break/);
  });

  it('refuses a bad name, URL or relative path', () => {
    expect(() => systemdUnit({ ...input, name: 'GPU A' })).toThrow(/--name GPU A: a machine name is 1-63 characters/);
    expect(() => systemdUnit({ ...input, apiUrl: 'queue:8443' })).toThrow(/--api-url queue:8443: expected an http/);
    expect(() => systemdUnit({ ...input, dataDir: 'data' })).toThrow(/--data-dir data: systemd needs an absolute path/);
  });

  it('the verb: --api-url and --name required; --output writes the file; --insecure is passed on', async () => {
    const cwd = await tempDir();
    const missing = await runCycle(['daemon', 'unit', '--name', 'gpu-a'], { cwd });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--api-url is required');
    const printed = await runCycle(
      ['daemon', 'unit', '--api-url', 'http://10.0.0.5:8080', '--name', 'gpu-a', '--insecure', '--user', 'ml', '--data-dir', '/srv/d'],
      {
        cwd,
        env: { USER: 'ml' },
      },
    );
    expect(printed.code).toBe(0);
    expect(printed.stdout).toMatch(/^ExecStart=\/\S+ \S+ daemon run --api-url http:\/\/10.0.0.5:8080 --name gpu-a --slots 1 --data-dir \/srv\/d --insecure$/m);
    const otherUser = await runCycle(['daemon', 'unit', '--api-url', 'https://q.example', '--name', 'gpu-a', '--user', 'ml'], { cwd, env: { USER: 'root' } });
    expect(otherUser.code).toBe(2);
    expect(otherUser.stderr).toContain('--user ml is not you (root): pass --data-dir too');
    const written = await runCycle(['daemon', 'unit', '--api-url', 'https://q.example', '--name', 'gpu-a', '--output', 'cycle-daemon.service'], {
      cwd,
      env: { USER: 'ml' },
    });
    expect(written.code).toBe(0);
    const file = path.join(cwd, 'cycle-daemon.service');
    expect(await fs.readFile(file, 'utf8')).toContain(`--data-dir ${path.join(cwd, '.local', 'share', 'cycle', 'daemon')}`);
    expect(written.stderr).toContain('systemctl enable --now cycle-daemon');
  });
});
