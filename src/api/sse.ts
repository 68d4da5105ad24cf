import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { CycleError, ExitCode } from '../errors.js';
import { streamEventViewSchema, type StreamEventView } from './schemas.js';
import { ApiError, type ApiClient } from './client.js';

export interface FollowedEvent {
  id: string;
  type: string;
  event: StreamEventView;
}

/** The event types cycle acts on; any other (a newer server's) is skipped, not an error. */
export const KNOWN_EVENT_TYPES: ReadonlySet<string> = new Set(['job', 'task', 'output', 'progress', 'artifact', 'kv', 'build']);

export interface FollowOptions {
  lastEventId?: string;
  signal?: AbortSignal;
  /** Called before each reconnect (a dropped connection). */
  onReconnect?: (attempt: number, reason: string) => void;
  sleep?: (ms: number) => Promise<void>;
  /** Give up after this many reconnects in a row that each dropped within `healthyMs` (default 20). */
  maxReconnects?: number;
  /** A connection that stays up this long counts as healthy: the count of reconnects starts again (default 10 s). */
  healthyMs?: number;
  /** The most bytes of one event, or of a line without its end (default MAX_EVENT_BYTES). */
  maxEventBytes?: number;
  now?: () => number;
}

/**
 * The most bytes of one event (or of a line not yet ended) cycle holds: events carry a few KiB of
 * output; a server that sends more without ending the line is refused before the memory fills.
 */
export const MAX_EVENT_BYTES = 16 << 20;

/** The stream broke a rule no reconnect can mend: final. */
class StreamRefused extends CycleError {}

/**
 * Follows an SSE stream of the API to its end, reconnecting after a dropped connection with
 * Last-Event-ID: every event is yielded once, in order, even across reconnects. Reconnects back
 * off (250 ms doubling to 5 s) and give up after `maxReconnects` in a row whose connection dropped
 * within `healthyMs`: a server that drops the stream after each event is not asked forever.
 */
export async function* followEvents(api: ApiClient, path: string, options: FollowOptions = {}): AsyncGenerator<FollowedEvent> {
  let lastEventId = options.lastEventId;
  let failures = 0;
  const now = options.now ?? Date.now;
  const maxEventBytes = options.maxEventBytes ?? MAX_EVENT_BYTES;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  for (;;) {
    if (options.signal?.aborted) return;
    let reason = 'the stream ended early';
    let ended = false;
    const opened = now();
    try {
      const response = await api.openStream(path, lastEventId, options.signal);
      const pending: EventSourceMessage[] = [];
      // Bytes since the last event or comment: what the parser holds for an event not yet whole.
      let unfinished = 0;
      const parser = createParser({ onEvent: (message) => pending.push(message), onComment: () => (unfinished = 0) });
      const decoder = new TextDecoder();
      for await (const chunk of response.body) {
        unfinished += (chunk as Uint8Array).length;
        if (unfinished > maxEventBytes) {
          response.body.destroy();
          throw new StreamRefused({
            message: `${path}: the server sent more than ${maxEventBytes >> 20} MiB without ending an event; cycle stopped reading`,
            hint: 'the server misbehaves; check --api-url / CYCLE_API_URL, and `cycle job get ID` for where the job stands',
            exitCode: ExitCode.network,
          });
        }
        parser.feed(decoder.decode(chunk as Uint8Array, { stream: true }));
        if (pending.length > 0) unfinished = 0;
        for (const message of pending.splice(0)) {
          if (message.event === 'end') {
            ended = true;
            break;
          }
          if (message.id !== undefined && lastEventId !== undefined && Number(message.id) <= Number(lastEventId)) continue;
          if (message.id !== undefined) lastEventId = message.id;
          // An event named only inside its data (no `event:` line) is read by that name.
          const named = message.event ?? 'message';
          if (named !== 'message' && !KNOWN_EVENT_TYPES.has(named)) continue;
          // An unnamed message that is not an event object (a heartbeat such as `data: ping`) is skipped too.
          const event = parseEvent(path, message.data, named === 'message');
          if (event === undefined) continue;
          const type = named === 'message' ? (event.type ?? 'message') : named;
          if (!KNOWN_EVENT_TYPES.has(type)) continue;
          yield { id: message.id ?? '', type, event };
        }
        if (ended) break;
      }
      if (ended) {
        response.body.destroy();
        return;
      }
    } catch (error) {
      if (options.signal?.aborted) return;
      // The server answered (401, 404, no token): final. A 5xx, a dropped connection, a garbled event: reconnect.
      if (error instanceof ApiError && error.status < 500) throw error;
      if (error instanceof StreamRefused) throw error;
      reason = error instanceof Error ? error.message : String(error);
    }
    // A connection that stayed up a while was progress: the count starts again. Events alone are not
    // (a server that drops after each one would otherwise be asked forever, as fast as it answers).
    const healthyMs = options.healthyMs ?? 10_000;
    failures = now() - opened >= healthyMs ? 1 : failures + 1;
    const maxReconnects = options.maxReconnects ?? 20;
    if (failures > maxReconnects) {
      throw new CycleError({
        message: `lost the event stream ${path} (${reason}) and could not reconnect: ${maxReconnects} reconnects in a row each dropped within ${Math.round(healthyMs / 1000)}s`,
        hint: 'check the server; `cycle job get ID` shows where the job stands',
        exitCode: ExitCode.network,
      });
    }
    options.onReconnect?.(failures, reason);
    await sleep(Math.min(5000, 250 * 2 ** (failures - 1)));
  }
}

/**
 * An event's data, checked like every other answer of the API. For an unnamed message (`lenient`),
 * data that is not an event (not JSON, or not an event's shape) is undefined instead of an error.
 */
function parseEvent(path: string, data: string, lenient = false): StreamEventView | undefined {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    if (lenient) return undefined;
    throw new CycleError({ message: `${path}: an event that is not JSON: ${data.slice(0, 80)}`, exitCode: ExitCode.network });
  }
  const result = streamEventViewSchema.safeParse(value);
  if (!result.success) {
    if (lenient) return undefined;
    const issue = result.error.issues[0]!;
    throw new CycleError({
      message: `${path}: an event does not have the expected shape: ${issue.path.join('.') || '(event)'}: ${issue.message}`,
      exitCode: ExitCode.network,
    });
  }
  return result.data;
}
