import v8 from 'node:v8';
import vm from 'node:vm';

let collect: (() => void) | null | undefined;

/**
 * A full garbage collection, now. Packing turns 1 GiB into Buffers that are garbage a moment
 * later; V8 collects external memory only every ~64 MB, which alone put a 1 GiB upload over its
 * memory budget. Collecting every few dozen megabytes keeps the peak flat for ~10 ms each.
 */
export function collectGarbage(): void {
  if (collect === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      collect = vm.runInNewContext('gc') as () => void;
    } catch {
      collect = null;
    }
  }
  collect?.();
}
