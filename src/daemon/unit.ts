import { machineName } from '../api/machines.js';
import { usageError } from '../errors.js';

export interface UnitInput {
  /** The program and its script: `[process.execPath, /abs/path/bin/cycle.js]` (absolute: systemd has no PATH of the user). */
  command: readonly string[];
  apiUrl: string;
  name: string;
  slots: number;
  dataDir: string;
  /** Holds `CYCLE_MACHINE_TOKEN=...` (0600, root's): the token never goes in the unit, which anyone may read. */
  environmentFile: string;
  /** The user the daemon runs as (it needs Docker: the docker group). */
  user: string;
  insecure: boolean;
}

/** The default environment file of a machine's unit. */
export function defaultEnvironmentFile(name: string): string {
  return `/etc/cycle/daemon-${name}.env`;
}

/**
 * A systemd service unit running `cycle daemon run` in the foreground (Type=simple), restarted
 * when it fails; SIGTERM stops it (it gives its tasks back to the queue) within TimeoutStopSec.
 */
export function systemdUnit(input: UnitInput): string {
  const parsedName = machineName.safeParse(input.name);
  if (!parsedName.success) throw usageError(`--name ${input.name}: ${parsedName.error.issues[0]?.message}`);
  let url: URL;
  try {
    url = new URL(input.apiUrl);
  } catch {
    throw usageError(`--api-url ${input.apiUrl}: expected a URL like https://queue.example.com:8443`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw usageError(`--api-url ${input.apiUrl}: expected an http:// or https:// URL`);
  for (const [what, value] of [
    ['--data-dir', input.dataDir],
    ['--environment-file', input.environmentFile],
    ...input.command.map((c) => ['the cycle program', c] as const),
  ] as const)
    if (!value.startsWith('/')) throw usageError(`${what} ${value}: systemd needs an absolute path`);
  const args = [
    ...input.command,
    'daemon',
    'run',
    '--api-url',
    input.apiUrl,
    '--name',
    input.name,
    '--slots',
    String(input.slots),
    '--data-dir',
    input.dataDir,
  ];
  if (input.insecure) args.push('--insecure');
  return [
    '[Unit]',
    `Description=cycle daemon ${input.name}: runs queued jobs of ${url.origin} on this machine`,
    'After=network-online.target docker.service',
    'Wants=network-online.target docker.service',
    '',
    '[Service]',
    'Type=simple',
    `User=${systemdQuote(input.user, '--user')}`,
    '# CYCLE_MACHINE_TOKEN=... (from `cycle machine token create`); keep this file 0600.',
    `EnvironmentFile=${systemdQuote(input.environmentFile, '--environment-file')}`,
    `ExecStart=${args.map((a) => systemdQuote(a, 'an ExecStart argument')).join(' ')}`,
    'Restart=on-failure',
    'RestartSec=5',
    // The daemon gives its running tasks back on SIGTERM; give it time to say so to the server.
    'KillSignal=SIGTERM',
    'TimeoutStopSec=60',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/** One word of a unit file: `%` and `$` doubled (systemd's specifiers and variables), quoted when it has spaces or quotes. */
export function systemdQuote(value: string, what: string): string {
  if (/[\n\r\0]/.test(value)) throw usageError(`${what} ${JSON.stringify(value)}: a unit file value cannot hold a line break`);
  const escaped = value.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  if (/^[A-Za-z0-9_@%+=:,./$-]+$/.test(escaped)) return escaped;
  return `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}
