import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ansiSegments } from './ansi.js';

/** Lines drawn at most: a long log shows its newest lines (the search looks through all that were read). */
const SHOWN_LINES = 2000;

/** A task's log: colours kept safely, `[cycle]` lines told apart, a search, following the end while scrolled there. */
export function LogView(props: { text: string; label: string }) {
  const [search, setSearch] = useState('');
  const box = useRef<HTMLPreElement>(null);
  const atEnd = useRef(true);
  const lines = useMemo(() => props.text.split('\n'), [props.text]);
  const matching = useMemo(() => {
    const needle = search.toLowerCase();
    return needle ? lines.filter((line) => line.toLowerCase().includes(needle)) : lines;
  }, [lines, search]);
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
          {search ? `${matching.length} matching line${matching.length === 1 ? '' : 's'}` : `${lines.length} lines`}
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
        {shown.map((line, i) =>
          line.startsWith('[cycle] ') ? (
            <div key={i} class="log-line system">
              {line}
            </div>
          ) : (
            <div key={i} class="log-line">
              {ansiSegments(line).map((segment) => (segment.classes ? <span class={segment.classes}>{segment.text}</span> : segment.text))}
            </div>
          ),
        )}
      </pre>
    </div>
  );
}
