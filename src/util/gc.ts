import v8 from 'node:v8';
import vm from 'node:vm';

let collect: (() => void) | null | undefined;

/**
 * A full garbage collection, now. Packing turns 1 GiB into Buffers that are garbage a moment
 * later; V8 collects external memory only every ~64 MB, which alone put a 1 GiB upload over its
 * memory budget. Collecting every 8 MB (of output packed, of bytes uploaded) keeps the peak flat
 * for ~5-10 ms each.
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

/**
 * Keeps V8's young generation at its start-up size from now on. Streaming 1 GiB through short-
 * lived Buffers otherwise grows it to its 16 MB semi-spaces (~30 MB more peak RSS). Set at run
 * time, for the commands that stream, so every other command starts with V8's defaults
 * (a `--max-semi-space-size=2` for all cost ~20 ms of scavenges at every start-up).
 */
export function limitYoungGeneration(): void {
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}

/**
 * Keeps WebAssembly at V8's baseline compiler (Liftoff) from now on. undici parses HTTP with
 * llhttp compiled to WebAssembly; V8 then recompiles its big parser function with its optimizing
 * compiler on a background thread, ~30 MB of compiler memory for a fraction of a second: the peak
 * RSS of a 1 GiB upload (measured 119-140 MiB with it, 109-111 MiB without). A CLI's answers
 * are small, so the baseline code parses them as fast as it matters. Set before undici loads.
 */
export function keepWasmAtBaseline(): void {
  v8.setFlagsFromString('--liftoff-only');
}
