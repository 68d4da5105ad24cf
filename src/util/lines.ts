/** Calls `onLine` for each complete line of a byte stream; `flush` emits a last partial line. */
export function lineSplitter(onLine: (line: string) => void): { push(chunk: Buffer | string): void; flush(): void } {
  let pending = '';
  return {
    push(chunk) {
      pending += chunk.toString();
      let index: number;
      while ((index = pending.indexOf('\n')) >= 0) {
        onLine(pending.slice(0, index).replace(/\r$/, ''));
        pending = pending.slice(index + 1);
      }
    },
    flush() {
      if (pending !== '') onLine(pending);
      pending = '';
    },
  };
}
