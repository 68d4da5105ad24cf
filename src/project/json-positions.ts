import { parseTree, printParseErrorCode, type Node, type ParseError } from 'jsonc-parser';
import { LineIndex, PositionMap, type FieldPath, type Position } from './positions.js';

export interface JsonParseResult {
  value: unknown;
  positions: PositionMap;
  errors: Array<{ at: Position; message: string }>;
  /** Keys written twice in one object (JSON parsers keep the last one): where each one is. */
  duplicates: Array<{ path: FieldPath; first: Position; second: Position }>;
}

const messages: Record<string, string> = {
  InvalidSymbol: 'unexpected character',
  InvalidNumberFormat: 'invalid number',
  PropertyNameExpected: 'expected a property name in double quotes',
  ValueExpected: 'expected a value',
  ColonExpected: 'expected ":"',
  CommaExpected: 'expected ","',
  CloseBraceExpected: 'expected "}"',
  CloseBracketExpected: 'expected "]"',
  EndOfFileExpected: 'unexpected content after the end of the document',
  InvalidCommentToken: 'comments are not allowed in JSON',
  UnexpectedEndOfComment: 'unterminated comment',
  UnexpectedEndOfString: 'unterminated string',
  UnexpectedEndOfNumber: 'unterminated number',
  InvalidUnicode: 'invalid unicode escape',
  InvalidEscapeCharacter: 'invalid escape character',
  InvalidCharacter: 'invalid character in string',
};

/** Strict JSON (no comments, no trailing commas) with the position of every key and value. */
export function parseJsonWithPositions(text: string): JsonParseResult {
  const lines = new LineIndex(text);
  const parseErrors: ParseError[] = [];
  const tree = parseTree(text, parseErrors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  const positions = new PositionMap();
  const errors = parseErrors.map((e) => ({ at: lines.at(e.offset), message: messages[printParseErrorCode(e.error)] ?? printParseErrorCode(e.error) }));
  const duplicates: JsonParseResult['duplicates'] = [];
  if (tree) index(tree, [], positions, lines, duplicates);
  return { value: tree ? toValue(tree) : undefined, positions, errors, duplicates };
}

function index(node: Node, path: FieldPath, positions: PositionMap, lines: LineIndex, duplicates: JsonParseResult['duplicates']): void {
  const at = lines.at(node.offset);
  positions.set(path, { key: at, value: at });
  if (node.type === 'object') {
    for (const property of node.children ?? []) {
      const [keyNode, valueNode] = property.children ?? [];
      if (!keyNode) continue;
      const childPath = [...path, String(keyNode.value)];
      const earlier = positions.get(childPath);
      if (earlier) duplicates.push({ path: childPath, first: earlier.key, second: lines.at(keyNode.offset) });
      if (valueNode) {
        positions.set(childPath, { key: lines.at(keyNode.offset), value: lines.at(valueNode.offset) });
        index(valueNode, childPath, positions, lines, duplicates);
      } else {
        const keyAt = lines.at(keyNode.offset);
        positions.set(childPath, { key: keyAt, value: keyAt });
      }
    }
  } else if (node.type === 'array') {
    (node.children ?? []).forEach((child, i) => index(child, [...path, i], positions, lines, duplicates));
  }
}

function toValue(node: Node): unknown {
  switch (node.type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const property of node.children ?? []) {
        const [keyNode, valueNode] = property.children ?? [];
        if (keyNode && valueNode) out[String(keyNode.value)] = toValue(valueNode);
      }
      return out;
    }
    case 'array':
      return (node.children ?? []).map(toValue);
    default:
      return node.value;
  }
}

export function jsonTypeName(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'object';
  return typeof value;
}
