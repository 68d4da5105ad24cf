import fs from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '../../context.js';
import { ExitCode, usageError } from '../../errors.js';
import type { DaemonRunOptions } from './run.command.js';

export async function run(options: DaemonRunOptions, ctx: Context): Promise<number> {
  if (!options.apiUrl) throw usageError('--api-url is required: the address of the cycle server, e.g. --api-url https://queue.example:8787');
  if (!options.name) throw usageError("--name is required: this machine's name in the pool, e.g. --name gpu-a");
  const apiUrl = checkedApiUrl(options.apiUrl, options.insecure === true);
  const { machineName } = await import('../../api/machines.js');
  const named = machineName.safeParse(options.name);
  if (!named.success) throw usageError(`--name ${options.name}: ${named.error.issues[0]?.message ?? 'not a machine name'}`);
  const slots = Number(options.slots);
  if (!Number.isInteger(slots) || slots < 1 || slots > 256) throw usageError(`--slots ${options.slots}: expected a number of tasks at a time, 1-256`);
  const token = await machineToken(options.tokenFile, ctx);
  const [
    { defaultDaemonDataDir },
    { DaemonControlServer },
    { createMachineProbe, dockerContainerCgroups, realMachineSources },
    { daemonMachineSources },
    { startDaemon, daemonServerKey },
  ] = await Promise.all([
    import('../../daemon/data-dir.js'),
    import('../../daemon/control.js'),
    import('../../daemon/probe.js'),
    import('../../daemon/probe-fixture.js'),
    import('../../server/worker/daemon.js'),
  ]);
  const dataDir = path.resolve(ctx.cwd, options.dataDir ?? defaultDaemonDataDir(ctx.env));
  const log = (line: string): void => ctx.ui.info(`${new Date(ctx.clock.now()).toISOString()} ${line}`);
  let daemon: Awaited<ReturnType<typeof startDaemon>> | undefined;
  // The control socket first: it prepares the data folder (0700) and takes its lock (one daemon per folder).
  const control = await DaemonControlServer.start({
    dataDir,
    clock: ctx.clock,
    status: () =>
      daemon?.status() ?? {
        name: named.data,
        api_url: apiUrl,
        state: 'starting',
        version: ctx.version,
        slots,
        running: [],
        last_heartbeat_at: null,
        server_ok: false,
        last_error: null,
        inventory: null,
        activity: null,
      },
    onChange: () => daemon?.poke(),
  });
  try {
    const serverKey = daemonServerKey(dataDir);
    const probe = createMachineProbe({
      sources: await daemonMachineSources(ctx.env, realMachineSources({ exec: ctx.exec, docker: () => ctx.docker(), env: ctx.env })),
      dataDir,
      control: () => control.state(),
      // The daemon's own containers: their CPU, memory and GPUs are the jobs' load, not the machine's.
      jobCgroups: async () => {
        const docker = await ctx.docker();
        const containers = await docker.listContainers({ label: [`cycle.server=${serverKey}`] });
        return containers.flatMap((c) => dockerContainerCgroups(c.id));
      },
      jobGpus: () => daemon?.gpusInUse() ?? [],
      version: ctx.version,
    });
    daemon = await startDaemon({
      apiUrl,
      token,
      name: named.data,
      slots,
      dataDir,
      version: ctx.version,
      docker: () => ctx.docker(),
      env: ctx.env,
      clock: ctx.clock,
      log,
      probe,
      control: () => control.state(),
      signal: ctx.signal,
      ...(ctx.env.CYCLE_DAEMON_HEARTBEAT_MS ? { heartbeatMs: Number(ctx.env.CYCLE_DAEMON_HEARTBEAT_MS) } : {}),
    });
    await daemon.done;
  } finally {
    await control.close();
  }
  log('stopped');
  return ExitCode.ok;
}

/** The server's URL: https, or http to this machine only unless --insecure (the token would travel in clear). */
export function checkedApiUrl(text: string, insecure: boolean): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usageError(`--api-url ${text}: not a URL; expected e.g. https://queue.example:8787`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw usageError(`--api-url ${text}: expected an https:// (or http://) URL`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const loopback = host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
  if (url.protocol === 'http:' && !loopback && !insecure)
    throw usageError(
      `--api-url ${text}: plain http:// to another host would send the machine token in clear; serve the server over https (\`cycle server --tls-cert FILE --tls-key FILE\`, or a reverse proxy) and use https://, or pass --insecure on a network you trust`,
    );
  return text.replace(/\/+$/, '');
}

/** The machine token: CYCLE_MACHINE_TOKEN, else --token-file (never a flag value: `ps` shows those). */
async function machineToken(tokenFile: string | undefined, ctx: Context): Promise<string> {
  if (tokenFile !== undefined) {
    const file = path.resolve(ctx.cwd, tokenFile);
    const text = await fs.readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      throw usageError(`--token-file ${tokenFile}: cannot read it (${error.code ?? error.message})`);
    });
    const token = text.trim();
    if (!token) throw usageError(`--token-file ${tokenFile}: the file is empty; put the machine token of \`cycle machine token create\` in it`);
    return token;
  }
  const token = ctx.env.CYCLE_MACHINE_TOKEN?.trim();
  if (!token)
    throw usageError('no machine token: set CYCLE_MACHINE_TOKEN or pass --token-file FILE with the token of `cycle machine token create` (run on the server)');
  return token;
}
