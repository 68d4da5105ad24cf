import type { Context } from '../context.js';
import { ExitCode, isCycleError } from '../errors.js';
import { dockerGpuSupport, probeNvidia, NO_CONTAINER_RUNTIME_HINT } from '../docker/gpu.js';
import { describeSource, resolveApiSettings } from '../config/config.js';
import { findProjectRoot } from '../project/load.js';
import { compareVersions } from '../docker/cuda-drivers.js';
import type { DockerInfo } from '../docker/driver.js';
import type { DoctorOptions } from './doctor.command.js';
import { GVISOR_INSTALL_HINT, GVISOR_RUNTIME } from '../runner/limits.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
}

export const MIN_NODE = '20.18.0';

export async function run(options: DoctorOptions, ctx: Context): Promise<number> {
  const checks = await runChecks(ctx);
  if (options.json) {
    ctx.ui.json({ ok: !checks.some((c) => c.status === 'fail'), checks });
  } else {
    const { c } = ctx.ui;
    const label: Record<CheckStatus, string> = { ok: c.green('ok  '), warn: c.yellow('warn'), fail: c.red('fail') };
    const width = Math.max(...checks.map((check) => check.name.length));
    for (const check of checks) {
      ctx.ui.out(`${label[check.status]}  ${check.name.padEnd(width)}  ${check.detail}`);
      if (check.fix && check.status !== 'ok') ctx.ui.out(`      ${' '.repeat(width)}  ${c.dim('fix:')} ${check.fix}`);
    }
  }
  return checks.some((c) => c.status === 'fail') ? ExitCode.failure : ExitCode.ok;
}

export async function runChecks(ctx: Context): Promise<Check[]> {
  const checks: Check[] = [];
  const nodeVersion = process.versions.node;
  checks.push(
    compareVersions(nodeVersion, MIN_NODE) >= 0
      ? { name: 'node', status: 'ok', detail: `Node.js ${nodeVersion}` }
      : {
          name: 'node',
          status: 'fail',
          detail: `Node.js ${nodeVersion} is older than ${MIN_NODE}`,
          fix: 'install Node.js 20.18 or newer (https://nodejs.org)',
        },
  );

  let info: DockerInfo | undefined;
  try {
    const docker = await ctx.docker();
    info = await docker.info();
    checks.push({
      name: 'docker',
      status: 'ok',
      detail: `client ${info.clientVersion}, daemon ${info.serverVersion} (${info.operatingSystem || 'unknown OS'}); containers run through ${info.transport}`,
    });
    checks.push({
      name: 'builder',
      status: 'ok',
      detail: info.builder === 'buildkit' ? 'BuildKit' : 'legacy builder (BuildKit is off or buildx is missing; both work)',
    });
    checks.push(
      info.runtimes.includes(GVISOR_RUNTIME)
        ? { name: 'gvisor', status: 'ok', detail: `Docker has the "${GVISOR_RUNTIME}" runtime: jobs asking for "sandbox": "gvisor" run in gVisor` }
        : {
            name: 'gvisor',
            status: 'warn',
            detail: `Docker has no "${GVISOR_RUNTIME}" runtime: jobs asking for "sandbox": "gvisor" run unsandboxed`,
            fix: GVISOR_INSTALL_HINT,
          },
    );
  } catch (error) {
    if (!isCycleError(error)) throw error;
    checks.push({ name: 'docker', status: 'fail', detail: error.message, ...(error.hint ? { fix: error.hint } : {}) });
  }

  const probe = await probeNvidia(ctx.exec);
  if (probe.ok) {
    const { report } = probe;
    const gpus = report.gpus.length
      ? `, ${report.gpus.length} GPU${report.gpus.length === 1 ? '' : 's'}: ${[...new Set(report.gpus.map((g) => g.name))].join(', ')}`
      : '';
    const cuda = report.cudaVersion
      ? `CUDA ${report.cudaVersion}${report.cudaSource === 'driver-table' ? ' (from the driver table)' : ''}`
      : 'CUDA version unknown';
    checks.push({ name: 'nvidia', status: 'ok', detail: `driver ${report.driverVersion}, ${cuda}${gpus}` });
    if (info) {
      const support = await dockerGpuSupport(info, ctx.exec);
      checks.push(
        support
          ? { name: 'gpu in docker', status: 'ok', detail: support }
          : {
              name: 'gpu in docker',
              status: 'warn',
              detail: 'Docker has no NVIDIA container runtime: projects with [job].cuda cannot run locally',
              fix: NO_CONTAINER_RUNTIME_HINT,
            },
      );
    }
  } else if (probe.reason === 'not-installed') {
    checks.push({
      name: 'nvidia',
      status: 'warn',
      detail: 'no NVIDIA driver (nvidia-smi not found): projects with [job].cuda cannot run locally',
      fix: 'install an NVIDIA driver to test GPU jobs locally; CPU jobs are unaffected',
    });
  } else {
    checks.push({
      name: 'nvidia',
      status: 'warn',
      detail: `nvidia-smi failed (${probe.reason}): ${probe.detail.split('\n')[0]}`,
      fix: probe.reason === 'version-mismatch' ? 'reboot so the installed driver is loaded' : 'run `nvidia-smi` to see the problem',
    });
  }

  let projectRoot: string | undefined;
  try {
    projectRoot = (await findProjectRoot(ctx.cwd)).root;
  } catch {
    projectRoot = undefined;
  }
  const settings = await resolveApiSettings({ env: ctx.env, configDir: ctx.configDir, ...(projectRoot ? { projectRoot } : {}) });
  checks.push(
    settings.apiUrl
      ? { name: 'api url', status: 'ok', detail: `${settings.apiUrl} (${describeSource(settings.apiUrlSource)})` }
      : {
          name: 'api url',
          status: 'warn',
          detail: 'no API URL set',
          fix: 'set CYCLE_API_URL, or run `cycle auth login --api-url URL` (a local backend: `cycle server`)',
        },
  );
  checks.push(
    settings.token
      ? { name: 'token', status: 'ok', detail: `set (${describeSource(settings.tokenSource)})` }
      : settings.tokenWithheld
        ? { name: 'token', status: 'warn', detail: settings.tokenWithheld.message, fix: settings.tokenWithheld.hint }
        : { name: 'token', status: 'warn', detail: 'no token set', fix: 'set CYCLE_TOKEN, or run `cycle auth login`' },
  );
  return checks;
}
