import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ansiSegments } from './ansi.js';

/** Lines drawn at most: a long log shows its newest lines (the search looks through all that were read). */
const SHOWN_LINES = 2000;
const SYSTEM_PREFIX = '[cycle] ';

/** One line of a log: its task when the log is every task's, and whether the system wrote it (`[cycle]` lines). */
export interface LogLine {
  task?: number;
  text: string;
  system: boolean;
}

/** A log's text as lines (the `[cycle] ` prefix read off the system's), each of `task` when given. */
export function textLines(text: string, task?: number): LogLine[] {
  return text.split('\n').map((line) => {
    const system = line.startsWith(SYSTEM_PREFIX);
    return { ...(task === undefined ? {} : { task }), text: system ? line.slice(SYSTEM_PREFIX.length) : line, system };
  });
}

/** A log: colours kept safely, system lines told apart, each line's task shown when it has one, a search, following the end while scrolled there. */
export function LogView(props: { lines: LogLine[]; label: string }) {
  const [search, setSearch] = useState('');
  const box = useRef<HTMLPreElement>(null);
  const atEnd = useRef(true);
  const matching = useMemo(() => {
    const needle = search.toLowerCase();
    return needle ? props.lines.filter((line) => line.text.toLowerCase().includes(needle)) : props.lines;
  }, [props.lines, search]);
  const shown = matching.slice(-SHOWN_LINES);
  useEffect(() => {
    if (atEnd.current && box.current) box.current.scrollTop = box.current.scrollHeight;
  });
  return (
    <div class="log">
      <div class="log-bar">
        <label>
          Search the log <input type="search" value={search} onInput={(event) => setSearch(event.currentTarget.value)} />
        </label>
        <span class="muted">
          {search ? `${matching.length} matching line${matching.length === 1 ? '' : 's'}` : `${props.lines.length} lines`}
          {matching.length > SHOWN_LINES ? ` (the last ${SHOWN_LINES} shown)` : ''}
        </span>
      </div>
      <pre
        class="log-text"
        ref={box}
        tabIndex={0}
        aria-label={props.label}
        onScroll={(event) => {
          const el = event.currentTarget;
          atEnd.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {shown.map((line, i) => (
          <div key={i} class={line.system ? 'log-line system' : 'log-line'}>
            {line.task !== undefined && <span class="log-task">[{line.task}] </span>}
            {line.system
              ? `${SYSTEM_PREFIX}${line.text}`
              : ansiSegments(line.text).map((segment) => (segment.classes ? <span class={segment.classes}>{segment.text}</span> : segment.text))}
          </div>
        ))}
      </pre>
    </div>
  );
}
