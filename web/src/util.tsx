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

/** An EventSource on `url` (same origin, the cookie goes with it) while the component is shown. */
export function useEvents(url: string | undefined, onEvent: (type: string, data: unknown) => void, types: string[]): void {
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
        handler.current(type, data);
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

export function Failure(props: { error?: string | undefined }) {
  return props.error ? (
    <p class="failure" role="alert">
      {props.error}
    </p>
  ) : null;
}
