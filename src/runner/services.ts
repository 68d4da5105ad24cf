import path from 'node:path';
import type { Service } from '../project/computalot.js';
import { shellQuote } from '../util/shell.js';
import { MarkedLineFilter } from './progress.js';
import type { TaskOutcome } from './task.js';

/**
 * `runtime.services`: helper processes in the task's own container (under gVisor, separate
 * containers could not share loopback). The container runs a POSIX sh script generated here
 * from the manifest (`/bin/sh -c SCRIPT cycle-services ENTRYPOINT...`): it starts the services,
 * waits until each is healthy, then runs the entrypoint as its child and exits with its code.
 * A service that never gets healthy makes it print SERVICE_FAILED_MARKER and exit
 * SERVICE_FAILED_EXIT without running the entrypoint; ServiceLog reads that on the host.
 */

/** The shell the script needs in the image. */
export const SERVICES_SHELL = '/bin/sh';
/** `$0` of the script (what `ps` shows). */
const SCRIPT_NAME = 'cycle-services';
/** The stderr line the script prints when a service is not healthy: `<marker><name>:timeout` or `<marker><name>:exited:<code>`. */
export const SERVICE_FAILED_MARKER = 'COMPUTALOT_SERVICE_FAILED:';
/** The script's exit code then (only with the marker does it mean a service failure). */
export const SERVICE_FAILED_EXIT = 199;
/** Without a healthcheck, a service is healthy once it has kept running this long. */
export const SERVICE_SETTLE_S = 1;
/** The pause before a service is started again (`restart`: on_failure, always). */
export const SERVICE_RESTART_DELAY_S = 1;
/** Lines of a service's output the host keeps for a failure's reason. */
export const SERVICE_RING_LINES = 5;
/** Characters of one line kept in the ring. */
const RING_LINE_CHARS = 200;

/** Each line of a service's output, in the task log, starts with this. */
export function servicePrefix(name: string): string {
  return `[service ${name}] `;
}

/** The container's entrypoint and command for a task whose manifest declares services. */
export function withServices(command: readonly string[], services: readonly Service[], workdir: string): { entrypoint: string; command: string[] } {
  return { entrypoint: SERVICES_SHELL, command: ['-c', servicesScript(services, workdir), SCRIPT_NAME, ...command] };
}

/** Poll ticks for a time in seconds, for each tick length the script may use. */
function ticks(seconds: number): { half: number; whole: number } {
  return { half: Math.max(1, Math.ceil(seconds * 2)), whole: Math.max(1, Math.ceil(seconds)) };
}

/**
 * The supervisor script (POSIX sh: dash and busybox ash run it; no bash-isms). Every value from
 * the manifest is one shell-quoted word; names of shell functions and files use the service's
 * index only. State lives in files under a private folder (`$d`): a POSIX shell cannot ask
 * whether a background child has ended without waiting for it, so each child says so in a file.
 * Time is counted in poll ticks (0.5 s, or 1 s where `sleep` takes whole seconds only), so the
 * script needs no `date`.
 */
export function servicesScript(services: readonly Service[], workdir: string): string {
  const indexes = services.map((_, i) => i);
  const limits = services.map((s) => ticks(s.ready_timeout_s));
  const lines: string[] = [
    '# cycle: runtime.services, started before the entrypoint (generated from computalot.project.json)',
    'd="${TMPDIR:-/tmp}/cycle-services.$$"',
    `mkdir -m 700 "$d" || { echo "cycle: runtime.services needs a writable folder for its state, and $d cannot be made" >&2; exit 1; }`,
    // `sleep 0.5` is not POSIX; GNU and most busybox builds take it.
    'if sleep 0.01 2>/dev/null; then',
    `  tick=0.5 settle=${SERVICE_SETTLE_S * 2 + 1} nap=0.1 naps=10 ${indexes.map((i) => `L${i}=${limits[i]!.half}`).join(' ')}`,
    'else',
    `  tick=1 settle=${SERVICE_SETTLE_S + 1} nap=1 naps=1 ${indexes.map((i) => `L${i}=${limits[i]!.whole}`).join(' ')}`,
    'fi',
    'cycle_prefix() { while IFS= read -r line || [ -n "$line" ]; do printf \'%s%s\\n\' "$1" "$line"; done; }',
    'cycle_say() { printf \'%s%s\\n\' "$1" "$2" >&2; }',
    // The last three lines of a file, prefixed.
    'cycle_tail() {',
    '  n=0 a= b= c=',
    '  while IFS= read -r l || [ -n "$l" ]; do a=$b b=$c c=$l n=$((n+1)); done <"$2"',
    '  if [ "$n" -ge 3 ]; then cycle_say "$1" "  $a"; fi',
    '  if [ "$n" -ge 2 ]; then cycle_say "$1" "  $b"; fi',
    '  if [ "$n" -ge 1 ]; then cycle_say "$1" "  $c"; fi',
    '}',
    // Stop the services, then give their output up to ~1 s to reach the log (a child a service left
    // behind keeps the pipe open: it ends with the container).
    'cycle_stop() {',
    '  : >"$d/stop"',
    '  for f in "$d"/*.pid; do if [ -f "$f" ] && read p <"$f"; then kill "$p" 2>/dev/null; fi; done',
    ...indexes.map((i) => `  if [ -n "$hp${i}" ]; then kill "$hp${i}" 2>/dev/null; fi`),
    '  n=0',
    '  while [ "$n" -lt "$naps" ]; do',
    `    if ${indexes.map((i) => `[ -e "$d/${i}.drained" ]`).join(' && ')}; then break; fi`,
    '    sleep "$nap"; n=$((n+1))',
    '  done',
    '}',
    'cycle_fail() {',
    '  cycle_stop',
    `  printf '%s%s\\n' ${shellQuote(SERVICE_FAILED_MARKER)} "$1" >&2`,
    '  rm -rf "$d"',
    `  exit ${SERVICE_FAILED_EXIT}`,
    '}',
  ];
  services.forEach((service, i) => lines.push(...serviceFunctions(service, i, workdir)));
  lines.push(
    ...indexes.map((i) => `{ cycle_supervise_${i} 2>&1 | cycle_prefix "$P${i}" >&2; : >"$d/${i}.drained"; } &`),
    'ticks=0',
    'while :; do',
    '  ready=1',
    ...indexes.map((i) => `  cycle_poll_${i} || ready=0`),
    '  if [ "$ready" = 1 ]; then break; fi',
    '  sleep "$tick"; ticks=$((ticks+1))',
    'done',
    // The entrypoint: a child with the container's environment, in its working directory.
    '"$@"',
    'code=$?',
    'cycle_stop',
    'rm -rf "$d"',
    'exit "$code"',
  );
  return lines.join('\n') + '\n';
}

/** The functions and variables of service `i`. */
function serviceFunctions(service: Service, i: number, workdir: string): string[] {
  const cwd = service.cwd === undefined ? undefined : path.posix.resolve(workdir, service.cwd);
  // cd and env in the child only: the entrypoint keeps the container's own.
  const setup = [
    ...(cwd === undefined ? [] : [`  cd ${shellQuote(cwd)} || exit 1`]),
    ...Object.entries(service.env).map(([k, v]) => `  export ${shellQuote(`${k}=${v}`)}`),
  ];
  const words = (command: readonly string[]): string => command.map(shellQuote).join(' ');
  const prefix = servicePrefix(service.name);
  const timeout = `${service.ready_timeout_s}s`;
  const restart = service.restart === 'never' ? ['    break'] : service.restart === 'on_failure' ? ['    if [ "$code" -eq 0 ]; then break; fi'] : [];
  const lines = [
    `P${i}=${shellQuote(prefix)} N${i}=${shellQuote(service.name)} h${i}=0 hp${i}= s${i}= c${i}=0 k${i}=0 r${i}= last${i}=`,
    `cycle_run_${i}() {`,
    ...setup,
    `  exec ${words(service.command)}`,
    '}',
    `cycle_supervise_${i}() {`,
    '  n=0',
    '  while :; do',
    '    n=$((n+1))',
    `    cycle_run_${i} </dev/null &`,
    '    p=$!',
    `    echo "$p" >"$d/${i}.pid"`,
    `    echo "$n" >"$d/${i}.up"`,
    '    wait "$p" 2>/dev/null',
    '    code=$?',
    `    rm -f "$d/${i}.up"`,
    '    if [ -e "$d/stop" ]; then exit 0; fi',
    ...restart,
    `    echo "exited with code $code; starting it again in ${SERVICE_RESTART_DELAY_S}s (restart: ${service.restart})"`,
    `    sleep ${SERVICE_RESTART_DELAY_S}`,
    '    if [ -e "$d/stop" ]; then exit 0; fi',
    '  done',
    '  echo "exited with code $code"',
    // The code first, then the flag: a poll that sees the flag reads a whole code.
    `  echo "$code" >"$d/${i}.code"`,
    `  : >"$d/${i}.ended"`,
    '}',
  ];
  if (service.healthcheck) {
    lines.push(
      `cycle_check_${i}() {`,
      ...setup,
      `  exec ${words(service.healthcheck.command)}`,
      '}',
      // Checks alternate between two output files: the last finished one stays readable.
      `cycle_hc_${i}() {`,
      `  ( cycle_check_${i} ) >"$d/${i}.hc$1" 2>&1 </dev/null`,
      `  echo "$?" >"$d/${i}.hcrc"`,
      `  : >"$d/${i}.hcdone"`,
      '}',
      `cycle_poll_${i}() {`,
      `  if [ "$h${i}" = 1 ]; then return 0; fi`,
      `  if [ -e "$d/${i}.hcdone" ]; then`,
      `    read r${i} <"$d/${i}.hcrc"`,
      `    rm -f "$d/${i}.hcdone"`,
      `    wait "$hp${i}"; hp${i}=`,
      `    last${i}="$d/${i}.hc$((k${i} % 2))"`,
      `    if [ "$r${i}" = 0 ]; then h${i}=1; cycle_say "$P${i}" healthy; return 0; fi`,
      '  fi',
      `  if [ -e "$d/${i}.ended" ]; then read e <"$d/${i}.code"; cycle_fail "$N${i}:exited:$e"; fi`,
      `  if [ "$ticks" -ge "$L${i}" ]; then`,
      `    if [ -n "$last${i}" ]; then`,
      `      cycle_say "$P${i}" "not healthy within ${timeout}: the last healthcheck exited with code $r${i}"`,
      `      cycle_tail "$P${i}" "$last${i}"`,
      `    else cycle_say "$P${i}" "not healthy within ${timeout}: its healthcheck had not finished once"; fi`,
      `    cycle_fail "$N${i}:timeout"`,
      '  fi',
      `  if [ -z "$hp${i}" ]; then k${i}=$((k${i}+1)); cycle_hc_${i} $((k${i} % 2)) & hp${i}=$!; fi`,
      '  return 1',
      '}',
    );
  } else {
    lines.push(
      // Healthy once the same run of it is seen up on `settle` polls in a row.
      `cycle_poll_${i}() {`,
      `  if [ "$h${i}" = 1 ]; then return 0; fi`,
      `  if [ -e "$d/${i}.ended" ]; then read e <"$d/${i}.code"; cycle_fail "$N${i}:exited:$e"; fi`,
      `  u=; if [ -e "$d/${i}.up" ]; then read u <"$d/${i}.up"; fi`,
      `  if [ -z "$u" ]; then c${i}=0; elif [ "$u" = "$s${i}" ]; then c${i}=$((c${i}+1)); else s${i}=$u c${i}=1; fi`,
      `  if [ "$c${i}" -ge "$settle" ]; then h${i}=1; cycle_say "$P${i}" "running (no healthcheck)"; return 0; fi`,
      `  if [ "$ticks" -ge "$L${i}" ]; then`,
      `    cycle_say "$P${i}" "not healthy within ${timeout}: it did not keep running for ${SERVICE_SETTLE_S}s"`,
      `    cycle_fail "$N${i}:timeout"`,
      '  fi',
      '  return 1',
      '}',
    );
  }
  return lines;
}

export interface ServiceFailure {
  index: number;
  name: string;
  /** `timeout`, or the exit code it ended with before it was healthy. */
  cause: { kind: 'timeout' } | { kind: 'exited'; code: number };
}

/**
 * The host's side of the script, on the container's stderr: forwards everything but the
 * failure marker at once, keeps the last lines of each service's output, and reads the marker.
 */
export class ServiceLog {
  private readonly filter: MarkedLineFilter;
  private readonly rings = new Map<string, string[]>();
  /** The line being forwarded, up to RING_LINE_CHARS plus room for the prefix. */
  private line = '';
  private failed: ServiceFailure | undefined;

  constructor(
    private readonly services: readonly Service[],
    forward: (text: string) => void,
  ) {
    this.filter = new MarkedLineFilter(
      SERVICE_FAILED_MARKER,
      (text) => {
        this.observe(text);
        forward(text);
      },
      (rest) => this.onMarker(rest),
    );
  }

  push(chunk: Buffer | string): void {
    this.filter.push(chunk);
  }

  flush(): void {
    this.filter.flush();
    this.endLine();
  }

  /** The service the script reported, if it did. */
  failure(): ServiceFailure | undefined {
    return this.failed;
  }

  /** The last lines of a service's output, without the prefix. */
  lastLines(name: string): string[] {
    return [...(this.rings.get(name) ?? [])];
  }

  /**
   * The outcome with a service failure's reason when the script exited for one (the marker and
   * its exit code both); otherwise the outcome as it is.
   */
  explain(outcome: TaskOutcome): TaskOutcome {
    const failed = this.failed;
    if (!failed || outcome.status !== 'failed' || outcome.exitCode !== SERVICE_FAILED_EXIT || outcome.outOfMemory || outcome.dockerFailure) return outcome;
    return { ...outcome, reason: serviceFailureReason(failed, this.services[failed.index]!, this.lastLines(failed.name)) };
  }

  private observe(text: string): void {
    let rest = text;
    for (;;) {
      const newline = rest.indexOf('\n');
      const part = newline < 0 ? rest : rest.slice(0, newline);
      // Long lines are cut: the ring only needs their start.
      if (this.line.length < RING_LINE_CHARS + 100) this.line += part.slice(0, RING_LINE_CHARS + 100 - this.line.length);
      if (newline < 0) return;
      this.endLine();
      rest = rest.slice(newline + 1);
    }
  }

  private endLine(): void {
    const line = this.line.replace(/\r$/, '');
    this.line = '';
    const match = /^\[service ([^\]]+)\] /.exec(line);
    if (!match || !this.services.some((s) => s.name === match[1])) return;
    const name = match[1]!;
    const ring = this.rings.get(name) ?? [];
    const text = line.slice(match[0].length);
    ring.push(text.length > RING_LINE_CHARS ? `${text.slice(0, RING_LINE_CHARS)}…` : text);
    if (ring.length > SERVICE_RING_LINES) ring.shift();
    this.rings.set(name, ring);
  }

  private onMarker(rest: string): void {
    const match = /^([^:]+):(?:(timeout)|exited:(\d+))$/.exec(rest.trim());
    if (!match) return;
    const index = this.services.findIndex((s) => s.name === match[1]);
    if (index < 0) return;
    this.failed = { index, name: match[1]!, cause: match[2] ? { kind: 'timeout' } : { kind: 'exited', code: Number(match[3]) } };
  }
}

/** Why a task failed when service `failure.index` was not healthy: its name, the manifest field, the fix and its last output. */
export function serviceFailureReason(failure: ServiceFailure, service: Service, lastLines: readonly string[]): string {
  const field = `runtime.services[${failure.index}]`;
  const what =
    failure.cause.kind === 'timeout'
      ? `was not healthy within ${service.ready_timeout_s}s (${field}; fix the service${service.healthcheck ? ' or its healthcheck' : ''}, or raise its ready_timeout_s)`
      : `exited with code ${failure.cause.code} before it was healthy (${field}; a service must keep running${service.restart === 'never' ? ', or set "restart": "on_failure"' : ''})`;
  const last = lastLines.map((line) => line.trim()).filter((line) => line !== '');
  return `service ${JSON.stringify(failure.name)} ${what}; last output: ${last.length > 0 ? last.join(' | ') : '(none)'}`;
}

/** Why a task failed when the image has no /bin/sh to run the services with. */
export function noShellReason(dockerMessage: string): string {
  return `runtime.services needs ${SERVICES_SHELL} in the image to start the services before the entrypoint, and the image has none (Docker: ${dockerMessage}); fix: build from an image with a POSIX shell (e.g. a -slim or busybox-based one, not distroless), or remove runtime.services`;
}
