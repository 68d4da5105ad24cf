import { LineIndex, PositionMap, type FieldPath, type Position } from './positions.js';

/**
 * Indexes where each key and value of a TOML document is written. smol-toml gives positions
 * only for syntax errors; validation errors need them for every field. The input has already
 * been parsed successfully, so this scanner can be lenient: it only tracks structure.
 */
export function indexTomlPositions(text: string): PositionMap {
  return new TomlScanner(text).scan();
}

/** A key or [table] written twice: where each definition starts. */
export interface TomlDuplicate {
  path: FieldPath;
  /** `[main]` twice, or a key twice. */
  kind: 'table' | 'key';
  first: Position;
  second: Position;
}

/**
 * The keys and tables defined twice, in the order met. smol-toml refuses such a document with
 * only the second line; this names the key and both lines.
 */
export function findTomlDuplicates(text: string): TomlDuplicate[] {
  const scanner = new TomlScanner(text);
  scanner.scan();
  return scanner.duplicates;
}

class TomlScanner {
  private pos = 0;
  private readonly lines: LineIndex;
  private readonly map = new PositionMap();
  private readonly arrayTableCounts = new Map<string, number>();
  readonly duplicates: TomlDuplicate[] = [];

  constructor(private readonly text: string) {
    this.lines = new LineIndex(text);
  }

  scan(): PositionMap {
    let table: FieldPath = [];
    while (this.pos < this.text.length) {
      this.skipWhitespaceAndComments(true);
      if (this.pos >= this.text.length) break;
      const start = this.pos;
      if (this.text[this.pos] === '[') {
        const isArrayTable = this.text[this.pos + 1] === '[';
        this.pos += isArrayTable ? 2 : 1;
        const keyPath = this.readKeyPath();
        this.pos += isArrayTable ? 2 : 1;
        const here = this.lines.at(start);
        if (isArrayTable) {
          const id = JSON.stringify(keyPath);
          const index = this.arrayTableCounts.get(id) ?? 0;
          this.arrayTableCounts.set(id, index + 1);
          this.map.set(keyPath, { key: here, value: here });
          table = [...keyPath, index];
        } else {
          table = keyPath;
          const earlier = this.map.get(table);
          if (earlier) this.duplicates.push({ path: table, kind: 'table', first: earlier.key, second: here });
        }
        this.map.set(table, { key: here, value: here });
        this.skipToLineEnd();
        continue;
      }
      this.readKeyValue(table);
      this.skipToLineEnd();
    }
    return this.map;
  }

  private readKeyValue(table: FieldPath): void {
    const keyStart = this.pos;
    const keyPath = this.readKeyPath();
    this.skipInlineSpace();
    if (this.text[this.pos] === '=') this.pos++;
    this.skipInlineSpace();
    const full = [...table, ...keyPath];
    const earlier = this.map.get(full);
    if (earlier) this.duplicates.push({ path: full, kind: 'key', first: earlier.key, second: this.lines.at(keyStart) });
    const valueStart = this.pos;
    this.map.set(full, { key: this.lines.at(keyStart), value: this.lines.at(valueStart) });
    this.readValue(full);
  }

  private readValue(path: FieldPath): void {
    const here = this.lines.at(this.pos);
    const existing = this.map.get(path);
    if (!existing) this.map.set(path, { key: here, value: here });
    const ch = this.text[this.pos];
    if (ch === '[') {
      this.pos++;
      let index = 0;
      for (;;) {
        this.skipWhitespaceAndComments(true);
        if (this.pos >= this.text.length || this.text[this.pos] === ']') {
          this.pos++;
          return;
        }
        if (this.text[this.pos] === ',') {
          this.pos++;
          continue;
        }
        const elementPath = [...path, index];
        const at = this.lines.at(this.pos);
        this.map.set(elementPath, { key: at, value: at });
        this.readValue(elementPath);
        index++;
      }
    }
    if (ch === '{') {
      this.pos++;
      for (;;) {
        this.skipWhitespaceAndComments(true);
        if (this.pos >= this.text.length || this.text[this.pos] === '}') {
          this.pos++;
          return;
        }
        if (this.text[this.pos] === ',') {
          this.pos++;
          continue;
        }
        this.readKeyValue(path);
      }
    }
    if (ch === '"' || ch === "'") {
      this.readString();
      return;
    }
    // number, boolean, date: up to a delimiter
    while (this.pos < this.text.length && !/[,\]}\n#]/.test(this.text[this.pos]!)) this.pos++;
  }

  private readKeyPath(): string[] {
    const parts: string[] = [];
    for (;;) {
      this.skipInlineSpace();
      const ch = this.text[this.pos];
      if (ch === '"' || ch === "'") parts.push(this.readString());
      else {
        const start = this.pos;
        while (this.pos < this.text.length && /[A-Za-z0-9_-]/.test(this.text[this.pos]!)) this.pos++;
        parts.push(this.text.slice(start, this.pos));
      }
      this.skipInlineSpace();
      if (this.text[this.pos] === '.') {
        this.pos++;
        continue;
      }
      return parts;
    }
  }

  /** Reads any TOML string form and returns its (approximately) decoded content. */
  private readString(): string {
    const quote = this.text[this.pos]!;
    const multiline = this.text.startsWith(quote.repeat(3), this.pos);
    if (multiline) {
      this.pos += 3;
      const start = this.pos;
      for (;;) {
        if (this.pos >= this.text.length) return this.text.slice(start);
        if (quote === '"' && this.text[this.pos] === '\\') {
          this.pos += 2;
          continue;
        }
        if (this.text.startsWith(quote.repeat(3), this.pos)) {
          // up to two extra quotes may close the string: """a""""" is 'a""'
          let end = this.pos + 3;
          while (this.text[end] === quote && end - this.pos < 5) end++;
          const content = this.text.slice(start, end - 3);
          this.pos = end;
          return content;
        }
        this.pos++;
      }
    }
    this.pos++;
    let out = '';
    while (this.pos < this.text.length && this.text[this.pos] !== quote && this.text[this.pos] !== '\n') {
      if (quote === '"' && this.text[this.pos] === '\\') {
        const next = this.text[this.pos + 1];
        const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', '"': '"', '\\': '\\', b: '\b', f: '\f', e: '\x1b' };
        if (next !== undefined && simple[next] !== undefined) {
          out += simple[next];
          this.pos += 2;
          continue;
        }
        if (next === 'u' || next === 'U') {
          const length = next === 'u' ? 4 : 8;
          out += String.fromCodePoint(parseInt(this.text.slice(this.pos + 2, this.pos + 2 + length), 16));
          this.pos += 2 + length;
          continue;
        }
        if (next === 'x') {
          out += String.fromCharCode(parseInt(this.text.slice(this.pos + 2, this.pos + 4), 16));
          this.pos += 4;
          continue;
        }
      }
      out += this.text[this.pos];
      this.pos++;
    }
    this.pos++;
    return out;
  }

  private skipInlineSpace(): void {
    while (this.text[this.pos] === ' ' || this.text[this.pos] === '\t') this.pos++;
  }

  private skipWhitespaceAndComments(newlines: boolean): void {
    for (;;) {
      const ch = this.text[this.pos];
      if (ch === ' ' || ch === '\t' || ch === '\r' || (newlines && ch === '\n')) this.pos++;
      else if (ch === '#') while (this.pos < this.text.length && this.text[this.pos] !== '\n') this.pos++;
      else return;
    }
  }

  private skipToLineEnd(): void {
    this.skipInlineSpace();
    if (this.text[this.pos] === '#') while (this.pos < this.text.length && this.text[this.pos] !== '\n') this.pos++;
    if (this.text[this.pos] === '\r') this.pos++;
    if (this.text[this.pos] === '\n') this.pos++;
  }
}
