import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * docs/design.md, "No import cycles": the modules under src/ import each other as a tree-like
 * graph, so a module never loads half-made and a layer never reaches back up. Both kinds of import
 * count: a value import (a real cycle at run time) and an `import type` (erased when compiled, but
 * still two modules that each need the other to be understood).
 */
const SRC = path.resolve(import.meta.dirname, '../../src');

interface Edge {
  to: string;
  /** Only types are imported: TypeScript erases the import when it compiles. */
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(full) : entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [full] : [];
  });
}

/** The static relative imports and re-exports of a source file (a dynamic `import()` loads later, so it is no cycle). */
export function importsOf(text: string): { specifier: string; typeOnly: boolean }[] {
  const found: { specifier: string; typeOnly: boolean }[] = [];
  const statement = /^[ \t]*(import|export)\s+(type\s+)?([^;'"]*?)\s*from\s*['"](\.{1,2}\/[^'"]+)['"]|^[ \t]*import\s*['"](\.{1,2}\/[^'"]+)['"]/gm;
  for (const match of text.matchAll(statement)) {
    if (match[5]) {
      found.push({ specifier: match[5], typeOnly: false });
      continue;
    }
    const clause = match[3] ?? '';
    const braces = /\{([^}]*)\}/.exec(clause);
    const outside = clause
      .replace(/\{[^}]*\}/, '')
      .replace(/,/g, '')
      .trim();
    const specifiers = braces
      ? braces[1]!
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : [];
    // `import { type A, type B }` is erased as a whole; a default or namespace import, or one plain name, is not.
    const typeOnly = Boolean(match[2]) || (outside === '' && specifiers.length > 0 && specifiers.every((s) => s.startsWith('type ')));
    found.push({ specifier: match[4]!, typeOnly });
  }
  return found;
}

function graph(): Map<string, Edge[]> {
  const edges = new Map<string, Edge[]>();
  for (const file of sourceFiles(SRC)) {
    const from = path.relative(SRC, file);
    const list: Edge[] = [];
    for (const { specifier, typeOnly } of importsOf(fs.readFileSync(file, 'utf8'))) {
      const target = path.relative(SRC, path.resolve(path.dirname(file), specifier.replace(/\.js$/, '.ts')));
      list.push({ to: target, typeOnly });
    }
    edges.set(from, list);
  }
  return edges;
}

/** Every cycle's path (`a.ts -> b.ts -> a.ts`), one per strongly connected part of the graph. */
function cycles(edges: Map<string, Edge[]>, countTypes: boolean): string[] {
  const found: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const edge of edges.get(node) ?? []) {
      if (edge.typeOnly && !countTypes) continue;
      const seen = state.get(edge.to);
      if (seen === 'open') found.push([...stack.slice(stack.indexOf(edge.to)), edge.to].join(' -> '));
      else if (seen === undefined && edges.has(edge.to)) visit(edge.to);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...edges.keys()].sort()) if (!state.has(node)) visit(node);
  return found;
}

describe('no import cycles under src/', () => {
  it('reads value, type and re-export imports', () => {
    expect(importsOf("import { a } from './a.js';\nimport type { B } from '../b.js';\nexport { c } from './c.js';")).toEqual([
      { specifier: './a.js', typeOnly: false },
      { specifier: '../b.js', typeOnly: true },
      { specifier: './c.js', typeOnly: false },
    ]);
    expect(importsOf("import {\n  type A,\n  type B,\n} from './a.js';\nimport D, { type E } from './d.js';\nimport './side.js';")).toEqual([
      { specifier: './a.js', typeOnly: true },
      { specifier: './d.js', typeOnly: false },
      { specifier: './side.js', typeOnly: false },
    ]);
  });

  it('finds a cycle when there is one', () => {
    const edges = new Map<string, Edge[]>([
      ['a.ts', [{ to: 'b.ts', typeOnly: false }]],
      ['b.ts', [{ to: 'c.ts', typeOnly: true }]],
      ['c.ts', [{ to: 'a.ts', typeOnly: false }]],
    ]);
    expect(cycles(edges, true)).toEqual(['a.ts -> b.ts -> c.ts -> a.ts']);
    expect(cycles(edges, false)).toEqual([]);
  });

  it('no module imports a value from a module that imports it back', () => {
    expect(cycles(graph(), false)).toEqual([]);
  });

  it('nor a type: no cycle of any imports', () => {
    expect(cycles(graph(), true)).toEqual([]);
  });
});
