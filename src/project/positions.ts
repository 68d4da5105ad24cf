/** A place in a file, 1-based, as editors show it. */
export interface Position {
  line: number;
  column: number;
}

export type FieldPath = ReadonlyArray<string | number>;

/** Maps offsets in a text to line/column (columns count UTF-16 units after a stripped BOM). */
export class LineIndex {
  private readonly starts: number[] = [0];

  constructor(text: string) {
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) this.starts.push(i + 1);
  }

  at(offset: number): Position {
    let low = 0;
    let high = this.starts.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.starts[mid]! <= offset) low = mid;
      else high = mid - 1;
    }
    return { line: low + 1, column: offset - this.starts[low]! + 1 };
  }
}

export function pathKey(path: FieldPath): string {
  return JSON.stringify(path);
}

/** `main.build_files[1]`, `job.env_vars."MY VAR"` */
export function formatFieldPath(path: FieldPath): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (/^[A-Za-z0-9_-]+$/.test(part)) out += out === '' ? part : `.${part}`;
    else out += (out === '' ? '' : '.') + JSON.stringify(part);
  }
  return out;
}

export interface LocatedNode {
  /** Where the key is written (for a table: its header). */
  key: Position;
  /** Where the value starts (for a table: its header). */
  value: Position;
}

/** Positions of keys and values by field path; the nearest known ancestor answers for a path. */
export class PositionMap {
  private readonly nodes = new Map<string, LocatedNode>();

  set(path: FieldPath, node: LocatedNode): void {
    if (!this.nodes.has(pathKey(path))) this.nodes.set(pathKey(path), node);
  }

  get(path: FieldPath): LocatedNode | undefined {
    return this.nodes.get(pathKey(path));
  }

  /** The value's position, or the nearest ancestor's, or 1:1. */
  valueOf(path: FieldPath): Position {
    for (let n = path.length; n >= 0; n--) {
      const node = this.get(path.slice(0, n));
      if (node) return n === path.length ? node.value : node.key;
    }
    return { line: 1, column: 1 };
  }

  /** The key's position, or the nearest ancestor's, or 1:1. */
  keyOf(path: FieldPath): Position {
    for (let n = path.length; n >= 0; n--) {
      const node = this.get(path.slice(0, n));
      if (node) return node.key;
    }
    return { line: 1, column: 1 };
  }
}
