import fs from 'node:fs/promises';
import net from 'node:net';
import { z } from 'zod';
import { machineActivitySchema, machineInventorySchema, machineTaskSchema, type MachineActivity, type MachineInventory } from '../api/machines.js';
import { systemClock, type Clock } from '../context.js';
import { CycleError, ExitCode, errnoCode } from '../errors.js';
import { readJsonFile, writeFileAtomic } from '../util/fs.js';
import { takeLockFile } from '../util/lock.js';
import { daemonFiles, prepareDaemonDataDir } from './data-dir.js';

/**
 * A machine owner's say over the daemon (`cycle daemon pause|resume|forbid-busy-assign|
 * allow-busy-assign`), kept in `DATA_DIR/control.json` so a restart keeps a pause.
 */
export interface ControlState {
  /** ISO time the pause ends; null when not paused (an ended pause reads as null). */
  paused_until: string | null;
  /** On (the default): a busy machine takes no task and gives back what it runs (docs/daemon.md). */
  forbid_busy_assign: boolean;
}

export const DEFAULT_CONTROL_STATE: ControlState = { paused_until: null, forbid_busy_assign: true };
/** `cycle daemon pause` without a duration (platform-facts.md §A). */
export const DEFAULT_PAUSE_SECONDS = 8 * 3600;
/** The longest pause a daemon accepts (a year): a typo of a duration should not pause a machine for ever. */
export const MAX_PAUSE_SECONDS = 366 * 24 * 3600;

const controlStateSchema = z.object({ paused_until: z.string().datetime().nullable(), forbid_busy_assign: z.boolean() });

/** What `cycle daemon status` shows: the daemon's own report plus its control state. */
export const daemonStatusSchema = z
  .object({
    name: z.string(),
    api_url: z.string(),
    /** idle, busy, paused, draining (the server says so), offline (the server cannot be reached), starting. */
    state: z.string(),
    pid: z.number().int(),
    data_dir: z.string(),
    version: z.string().optional(),
    paused_until: z.string().nullable(),
    forbid_busy_assign: z.boolean(),
    slots: z.number().int().nonnegative(),
    running: z.array(machineTaskSchema),
    last_heartbeat_at: z.string().nullable(),
    /** Whether the last heartbeat / lease renewal reached the server. */
    server_ok: z.boolean(),
    last_error: z.string().nullable(),
    inventory: machineInventorySchema.nullable(),
    activity: machineActivitySchema.nullable(),
  })
  .passthrough();
export type DaemonStatus = z.infer<typeof daemonStatusSchema>;

/** What `cycle daemon run` reports of itself; the control server adds pid, data_dir and the control state. */
export interface DaemonStatusReport {
  name: string;
  api_url: string;
  /** idle, busy, paused, draining, offline or starting (docs/daemon.md). */
  state: string;
  version?: string;
  slots: number;
  running: Array<{ job_id: string; task_id: string; started_at: string | null }>;
  last_heartbeat_at: string | null;
  server_ok: boolean;
  last_error: string | null;
  inventory: MachineInventory | null;
  activity: MachineActivity | null;
}

const requestSchema = z.discriminatedUnion('op', [
  z.object({ op: z.literal('status') }),
  z.object({ op: z.literal('pause'), until: z.string().datetime() }),
  z.object({ op: z.literal('resume') }),
  z.object({ op: z.literal('forbid-busy-assign'), value: z.boolean() }),
]);
export type ControlRequest = z.infer<typeof requestSchema>;

const responseSchema = z.union([z.object({ ok: z.literal(true), status: daemonStatusSchema }), z.object({ ok: z.literal(false), error: z.string() })]);

/** A request line is small; a status answer carries an inventory (at most 256 GPUs). */
const MAX_REQUEST_BYTES = 64 * 1024;
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/** setTimeout's limit; a longer pause re-arms its timer when this one fires. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The control state, persisted atomically (0600) in the data folder. */
export class ControlStore {
  private constructor(
    private readonly file: string,
    private readonly clock: Clock,
    private current: ControlState,
  ) {}

  /** Reads `control.json`; a missing or unreadable file is the default state (nothing paused). */
  static async open(dataDir: string, clock: Clock = systemClock): Promise<ControlStore> {
    const file = daemonFiles(dataDir).controlState;
    const parsed = controlStateSchema.safeParse(await readJsonFile<unknown>(file));
    return new ControlStore(file, clock, parsed.success ? parsed.data : { ...DEFAULT_CONTROL_STATE });
  }

  /** The state now: a pause whose end has passed reads as not paused. */
  state(): ControlState {
    const until = this.current.paused_until;
    if (until !== null && Date.parse(until) <= this.clock.now()) return { ...this.current, paused_until: null };
    return { ...this.current };
  }

  async pause(until: Date): Promise<ControlState> {
    const now = this.clock.now();
    if (!(until.getTime() > now)) throw new ControlError(`a pause must end in the future (asked: until ${until.toISOString()})`);
    if (until.getTime() - now > MAX_PAUSE_SECONDS * 1000)
      throw new ControlError(`a pause can last at most ${MAX_PAUSE_SECONDS / 86400} days (asked: until ${until.toISOString()})`);
    return this.write({ ...this.current, paused_until: until.toISOString() });
  }

  resume(): Promise<ControlState> {
    return this.write({ ...this.current, paused_until: null });
  }

  setForbidBusyAssign(value: boolean): Promise<ControlState> {
    return this.write({ ...this.current, forbid_busy_assign: value });
  }

  private async write(next: ControlState): Promise<ControlState> {
    await writeFileAtomic(this.file, `${JSON.stringify(next, null, 2)}\n`, 0o600);
    this.current = next;
    return this.state();
  }
}

/** A refused control request (bad value): sent back to the verb as `{ok: false, error}`. */
class ControlError extends Error {}

export interface DaemonControlServerOptions {
  dataDir: string;
  /** The daemon's own report, asked for at each `status` request (and after each change). */
  status: () => DaemonStatusReport | Promise<DaemonStatusReport>;
  /** Heard after each change of the control state, and when a pause ends by itself. */
  onChange?: (state: ControlState) => void;
  clock?: Clock;
}

/**
 * The daemon's local control socket, `DATA_DIR/control.sock` (0600 in a 0700 folder: only its
 * owner reaches it), speaking one JSON object per line each way. Starting it takes the data
 * folder's lock (`daemon.lock`): a second daemon on the same folder is refused, naming the
 * first's pid; a socket file left by a daemon that crashed is replaced.
 */
export class DaemonControlServer {
  private readonly sockets = new Set<net.Socket>();
  private pauseTimer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly options: DaemonControlServerOptions,
    readonly store: ControlStore,
    private readonly server: net.Server,
    private readonly unlock: () => Promise<void>,
  ) {}

  static async start(options: DaemonControlServerOptions): Promise<DaemonControlServer> {
    const { dataDir } = options;
    await prepareDaemonDataDir(dataDir);
    const files = daemonFiles(dataDir);
    const unlock = await takeLockFile(
      files.lock,
      (pid) =>
        new CycleError({
          message: `another cycle daemon (pid ${pid}) is running on the data folder ${dataDir}`,
          hint: `talk to it with \`cycle daemon status --data-dir ${dataDir}\`, stop it first (kill ${pid}), or start this one with another --data-dir`,
        }),
    );
    try {
      const store = await ControlStore.open(dataDir, options.clock);
      // We hold the lock, so a socket file here is a crashed daemon's: nobody answers on it.
      await fs.rm(files.controlSocket, { force: true });
      const server = net.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(files.controlSocket, () => {
          server.off('error', reject);
          resolve();
        });
      });
      // The 0700 folder already keeps others out; the socket's own mode says so too.
      await fs.chmod(files.controlSocket, 0o600);
      const control = new DaemonControlServer(options, store, server, unlock);
      server.on('connection', (socket) => control.serve(socket));
      control.armPauseTimer();
      return control;
    } catch (error) {
      await unlock();
      throw error;
    }
  }

  /** The control state now (a pause that has ended reads as not paused). */
  state(): ControlState {
    return this.store.state();
  }

  async status(): Promise<DaemonStatus> {
    const report = await this.options.status();
    const control = this.state();
    // A pause is a state of its own (MACHINE_STATES) over idle and busy; draining, offline and starting say more.
    const state = control.paused_until !== null && (report.state === 'idle' || report.state === 'busy') ? 'paused' : report.state;
    return { ...report, state, ...control, pid: process.pid, data_dir: this.options.dataDir };
  }

  async close(): Promise<void> {
    clearTimeout(this.pauseTimer);
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await fs.rm(daemonFiles(this.options.dataDir).controlSocket, { force: true });
    await this.unlock();
  }

  private serve(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setEncoding('utf8');
    let buffered = '';
    let queue = Promise.resolve();
    const refuseOversize = (): void => {
      socket.removeAllListeners('data');
      buffered = '';
      socket.end(`${JSON.stringify({ ok: false, error: `a control request is at most ${MAX_REQUEST_BYTES} bytes` })}\n`);
    };
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.length > MAX_REQUEST_BYTES) {
          refuseOversize();
          return;
        }
        // Answers go in request order.
        queue = queue.then(async () => {
          const answer = await this.answer(line);
          if (!socket.destroyed) socket.write(`${JSON.stringify(answer)}\n`);
        });
      }
      if (buffered.length > MAX_REQUEST_BYTES) refuseOversize();
    });
  }

  private async answer(line: string): Promise<z.infer<typeof responseSchema>> {
    let request: ControlRequest;
    try {
      const parsed = requestSchema.safeParse(JSON.parse(line));
      if (!parsed.success) return { ok: false, error: `not a control request: ${parsed.error.issues[0]?.message ?? 'invalid'}` };
      request = parsed.data;
    } catch {
      return { ok: false, error: 'not a control request: expected one JSON object per line' };
    }
    try {
      const before = JSON.stringify(this.state());
      switch (request.op) {
        case 'status':
          break;
        case 'pause':
          await this.store.pause(new Date(request.until));
          break;
        case 'resume':
          await this.store.resume();
          break;
        case 'forbid-busy-assign':
          await this.store.setForbidBusyAssign(request.value);
          break;
      }
      if (request.op !== 'status') {
        this.armPauseTimer();
        if (JSON.stringify(this.state()) !== before) this.options.onChange?.(this.state());
      }
      return { ok: true, status: await this.status() };
    } catch (error) {
      if (error instanceof ControlError) return { ok: false, error: error.message };
      return { ok: false, error: `the daemon could not do it: ${error instanceof Error ? error.message : String(error)}` };
    }
  }

  /** When a pause ends by itself, the listener hears it (the daemon offers for work again at once). */
  private armPauseTimer(): void {
    clearTimeout(this.pauseTimer);
    const until = this.state().paused_until;
    if (until === null) return;
    const clock = this.options.clock ?? systemClock;
    const wait = Math.max(0, Date.parse(until) - clock.now());
    this.pauseTimer = setTimeout(
      () => {
        if (this.state().paused_until === null) this.options.onChange?.(this.state());
        else this.armPauseTimer();
      },
      Math.min(wait, MAX_TIMER_MS),
    );
    this.pauseTimer.unref();
  }
}

/** How the verbs reach a running daemon: one request per connection. */
export class DaemonControlClient {
  constructor(
    readonly dataDir: string,
    private readonly timeoutMs = 10_000,
  ) {}

  status(): Promise<DaemonStatus> {
    return this.request({ op: 'status' });
  }

  pause(until: Date): Promise<DaemonStatus> {
    return this.request({ op: 'pause', until: until.toISOString() });
  }

  resume(): Promise<DaemonStatus> {
    return this.request({ op: 'resume' });
  }

  setForbidBusyAssign(value: boolean): Promise<DaemonStatus> {
    return this.request({ op: 'forbid-busy-assign', value });
  }

  async request(request: ControlRequest): Promise<DaemonStatus> {
    const socketPath = daemonFiles(this.dataDir).controlSocket;
    const line = await new Promise<string>((resolve, reject) => {
      const socket = net.createConnection(socketPath);
      socket.setEncoding('utf8');
      let buffered = '';
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new CycleError({
            message: `the cycle daemon of ${this.dataDir} did not answer within ${this.timeoutMs / 1000} s`,
            hint: 'it may be stuck: look at its log (journalctl -u cycle-daemon@... when it runs under systemd), or restart it',
            exitCode: ExitCode.network,
          }),
        );
      }, this.timeoutMs);
      socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
      socket.on('data', (chunk: string) => {
        buffered += chunk;
        const newline = buffered.indexOf('\n');
        if (newline >= 0) {
          clearTimeout(timer);
          socket.end();
          resolve(buffered.slice(0, newline));
        } else if (buffered.length > MAX_RESPONSE_BYTES) {
          clearTimeout(timer);
          socket.destroy();
          reject(
            new CycleError({ message: `the cycle daemon of ${this.dataDir} sent an answer over ${MAX_RESPONSE_BYTES} bytes`, exitCode: ExitCode.network }),
          );
        }
      });
      socket.on('error', (error) => {
        clearTimeout(timer);
        reject(this.connectError(error, socketPath));
      });
      socket.on('close', () => {
        clearTimeout(timer);
        reject(new CycleError({ message: `the cycle daemon of ${this.dataDir} closed the control socket without an answer`, exitCode: ExitCode.network }));
      });
    });
    let parsed: z.infer<typeof responseSchema>;
    try {
      const result = responseSchema.safeParse(JSON.parse(line));
      if (!result.success) throw new Error(result.error.issues[0]?.message);
      parsed = result.data;
    } catch (error) {
      throw new CycleError({
        message: `the cycle daemon of ${this.dataDir} answered something this cycle cannot read (${error instanceof Error ? error.message : String(error)})`,
        hint: 'the daemon may be another cycle version: restart it with this one',
        exitCode: ExitCode.network,
      });
    }
    if (!parsed.ok) throw new CycleError({ message: `the cycle daemon refused: ${parsed.error}`, exitCode: ExitCode.failure });
    return parsed.status;
  }

  private connectError(error: Error, socketPath: string): CycleError {
    const code = errnoCode(error);
    if (code === 'ENOENT' || code === 'ECONNREFUSED')
      return new CycleError({
        message: `no cycle daemon is running for the data folder ${this.dataDir} (${code === 'ENOENT' ? 'no control socket' : 'nobody answers on the control socket'} ${socketPath})`,
        hint: `start one: cycle daemon run --api-url URL --name NAME --data-dir ${this.dataDir} (or pass the --data-dir the daemon was started with)`,
        exitCode: ExitCode.network,
      });
    if (code === 'EACCES' || code === 'EPERM')
      return new CycleError({
        message: `not allowed to reach the cycle daemon's control socket ${socketPath} (${code})`,
        hint: 'the socket is owner-only: run this as the user the daemon runs as (e.g. sudo -u that-user cycle daemon ...)',
        exitCode: ExitCode.failure,
      });
    return new CycleError({ message: `cannot reach the cycle daemon at ${socketPath}: ${error.message}`, exitCode: ExitCode.network });
  }
}
