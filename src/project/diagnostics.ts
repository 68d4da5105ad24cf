import { formatFieldPath, type FieldPath, type Position } from './positions.js';

export type Severity = 'error' | 'warning';

/** One problem in a project file: where, which field, what was expected, how to fix it. */
export interface Diagnostic {
  severity: Severity;
  /** Path relative to the project root, with forward slashes. */
  file: string;
  line: number;
  column: number;
  /** `main.build_files[0]`; empty for problems of the whole file. */
  field: string;
  message: string;
  hint?: string;
}

export function diagnostic(severity: Severity, file: string, at: Position, field: FieldPath | string, message: string, hint?: string): Diagnostic {
  return {
    severity,
    file,
    line: at.line,
    column: at.column,
    field: typeof field === 'string' ? field : formatFieldPath(field),
    message,
    ...(hint === undefined ? {} : { hint }),
  };
}

export function sortDiagnostics(list: Diagnostic[]): Diagnostic[] {
  return [...list].sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column);
}

/** `file:line:col: error: field: message` then an indented fix line. */
export function formatDiagnostic(
  d: Diagnostic,
  colors?: { error: (s: string) => string; warning: (s: string) => string; dim: (s: string) => string },
): string[] {
  const label = colors ? colors[d.severity](d.severity) : d.severity;
  const field = d.field ? `${d.field}: ` : '';
  const lines = [`${d.file}:${d.line}:${d.column}: ${label}: ${field}${d.message}`];
  if (d.hint) lines.push(`  ${colors ? colors.dim('fix:') : 'fix:'} ${d.hint}`);
  return lines;
}

export function hasErrors(list: readonly Diagnostic[]): boolean {
  return list.some((d) => d.severity === 'error');
}
