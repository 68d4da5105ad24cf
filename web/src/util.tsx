import { useEffect, useRef, useState } from 'preact/hooks';
import type { ComponentChildren } from 'preact';

/** Navigates inside the page (no reload). */
export function navigate(to: string): void {
  history.pushState(null, '', to);
  dispatchEvent(new PopStateEvent('popstate'));
}

export function Link(props: { href: string; children: ComponentChildren; class?: string }) {
  return (
    <a
      href={props.href}
      class={props.class}
      onClick={(event) => {
        if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
        event.preventDefault();
        navigate(props.href);
      }}
    >
      {props.children}
    </a>
  );
}

export function useLocation(): { path: string; search: URLSearchParams } {
  const [location, setLocation] = useState(() => ({ path: window.location.pathname, search: new URLSearchParams(window.location.search) }));
  useEffect(() => {
    const update = () => setLocation({ path: window.location.pathname, search: new URLSearchParams(window.location.search) });
    addEventListener('popstate', update);
    return () => removeEventListener('popstate', update);
  }, []);
  return location;
}

/** Loads `load()` now and again whenever `deps` change; `reload()` reads it again (live updates). */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: unknown[]): { data?: T; error?: string; reload: () => void } {
  const [state, setState] = useState<{ data?: T; error?: string }>({});
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const controller = new AbortController();
    load(controller.signal).then(
      (data) => !controller.signal.aborted && setState({ data }),
      (error: Error) => !controller.signal.aborted && error.name !== 'AbortError' && setState((s) => ({ ...s, error: error.message })),
    );
    return () => controller.abort();
  }, [...deps, tick]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

/** Calls `fn` at most once per `ms`, the last call always made. */
export function useThrottled(fn: () => void, ms: number): () => void {
  const timer = useRef<number | undefined>(undefined);
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => () => clearTimeout(timer.current), []);
  return () => {
    if (timer.current !== undefined) return;
    timer.current = window.setTimeout(() => {
      timer.current = undefined;
      latest.current();
    }, ms);
  };
}

/** An EventSource on `url` (same origin, the cookie goes with it) while the component is shown; `id` is the event's number. */
export function useEvents(url: string | undefined, onEvent: (type: string, data: unknown, id: number) => void, types: string[]): void {
  const handler = useRef(onEvent);
  handler.current = onEvent;
  useEffect(() => {
    if (!url) return;
    const source = new EventSource(url);
    const listeners = types.map((type) => {
      const listener = (event: MessageEvent<string>) => {
        let data: unknown = null;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        handler.current(type, data, Number(event.lastEventId));
      };
      source.addEventListener(type, listener);
      return listener;
    });
    source.addEventListener('end', () => source.close());
    return () => {
      source.close();
      void listeners;
    };
  }, [url]);
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function duration(from: string | null | undefined, to: string | null | undefined, now = Date.now()): string {
  if (!from) return '—';
  const seconds = Math.max(0, ((to ? Date.parse(to) : now) - Date.parse(from)) / 1000);
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** A JSON value as one short line of text. */
export function short(value: unknown, max = 80): string {
  if (value === null || value === undefined) return '—';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function Status(props: { status: string }) {
  return <span class={`status status-${props.status.replace(/[^a-z]/g, '')}`}>{props.status}</span>;
}

export function Tags(props: { tags: string[] }) {
  return props.tags.length ? (
    <>
      {props.tags.map((t) => (
        <span class="tag">{t}</span>
      ))}
    </>
  ) : (
    '—'
  );
}

export function Failure(props: { error?: string | undefined }) {
  return props.error ? (
    <p class="failure" role="alert">
      {props.error}
    </p>
  ) : null;
}

export interface Column<Row> {
  /** The header, and the label of the cell when a narrow screen shows each row as a card. */
  label: string;
  cell: (row: Row) => ComponentChildren;
  class?: string;
}

/**
 * A table of rows; below 640 px wide each row becomes a card of labelled cells (style.css,
 * `table.cards`), so no column, and no button in one, is ever off the side of a phone's screen.
 */
export function DataTable<Row>(props: {
  rows: Row[];
  columns: Array<Column<Row>>;
  class?: string;
  rowKey?: (row: Row) => string | number;
  rowAttrs?: (row: Row) => Record<string, string | undefined>;
}) {
  return (
    <div class="table-wrap">
      <table class={`cards ${props.class ?? ''}`}>
        <thead>
          <tr>
            {props.columns.map((column) => (
              <th>{column.label}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {props.rows.map((row) => (
            <tr key={props.rowKey?.(row)} {...props.rowAttrs?.(row)}>
              {props.columns.map((column) => (
                <td data-label={column.label} class={column.class}>
                  {column.cell(row)}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** The cursors of a paged list (the server's `next_cursor`s): this page's, and those before it (Previous goes back one). */
export function useCursors(): { cursor: string; first: boolean; back: () => void; forward: (next: string) => void; reset: () => void } {
  const [cursors, setCursors] = useState<string[]>(['0']);
  return {
    cursor: cursors.at(-1)!,
    first: cursors.length === 1,
    back: () => setCursors(cursors.slice(0, -1)),
    forward: (next) => setCursors([...cursors, next]),
    reset: () => setCursors(['0']),
  };
}

/** Previous / Next for a list the server pages: "Previous tasks", "Next tasks". */
export function Pager(props: { what: string; cursors: ReturnType<typeof useCursors>; next: string | null | undefined }) {
  const { cursors, next } = props;
  if (cursors.first && !next) return null;
  return (
    <nav class="pager" aria-label={`${props.what} pages`}>
      {!cursors.first && (
        <button type="button" onClick={cursors.back}>
          Previous {props.what}
        </button>
      )}
      {next && (
        <button type="button" onClick={() => cursors.forward(next)}>
          Next {props.what}
        </button>
      )}
    </nav>
  );
}

/** A button that makes a change on the server (cancel, drain): busy while it runs, its failure shown beside it. */
export function ActionButton(props: { label: string; busyLabel: string; class?: string; action: () => Promise<unknown>; onDone: () => void }) {
  const [state, setState] = useState<{ busy: boolean; error?: string }>({ busy: false });
  return (
    <span>
      <button
        type="button"
        class={props.class}
        disabled={state.busy}
        onClick={async () => {
          setState({ busy: true });
          try {
            await props.action();
            setState({ busy: false });
            props.onDone();
          } catch (error) {
            setState({ busy: false, error: (error as Error).message });
          }
        }}
      >
        {state.busy ? props.busyLabel : props.label}
      </button>
      <Failure error={state.error} />
    </span>
  );
}
