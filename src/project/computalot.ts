import path from 'node:path';
import * as z from 'zod';
import { diagnostic, type Diagnostic } from './diagnostics.js';
import { jsonTypeName, parseJsonWithPositions } from './json-positions.js';
import { formatFieldPath, type FieldPath } from './positions.js';
import { issuesToDiagnostics, type FieldDoc } from './zod-diagnostics.js';
import { ENV_NAME_PATTERN, ENV_NAME_RULE, PROJECT_NAME_PATTERN, PROJECT_NAME_RULE, VOLUME_NAME_PATTERN, toEnvName, toProjectName } from './names.js';

import { COMPUTALOT_MANIFEST_PATH } from './paths.js';

export { COMPUTALOT_MANIFEST_PATH } from './paths.js';
export const KNOWN_SANDBOXES = ['gvisor', 'runc'];

const absolutePath = z.string().refine((p) => path.posix.isAbsolute(p), { message: 'absolute' });
const commandArray = z.array(z.string().min(1)).min(1);
const namedCommand = z.strictObject({ name: z.string().min(1).optional(), command: commandArray, timeout_s: z.number().positive().optional() });

const runtimeSchema = z.strictObject({
  kind: z.literal('oci'),
  sandbox: z.string().min(1).optional(),
  workdir: absolutePath.optional(),
});

const entrypointSchema = z.strictObject({
  command: commandArray,
  env: z.record(z.string().regex(ENV_NAME_PATTERN), z.string()).optional(),
});

const validationSchema = z.strictObject({
  executables: z.array(z.string().min(1)).default([]),
  files: z.array(z.string().min(1)).default([]),
  commands: z.array(z.union([commandArray, namedCommand])).default([]),
});

const cacheMountSchema = z.strictObject({ path: absolutePath, name: z.string().regex(VOLUME_NAME_PATTERN).optional() });
const dataSourceSchema = z.strictObject({ name: z.string().regex(VOLUME_NAME_PATTERN), uri: z.string().min(1), path: absolutePath });
const serviceSchema = z.strictObject({ name: z.string().regex(VOLUME_NAME_PATTERN), command: commandArray, port: z.number().int().min(1).max(65535).optional() });

const shape = {
  version: z.literal(1),
  name: z.string().regex(PROJECT_NAME_PATTERN).optional(),
  runtime: runtimeSchema,
  entrypoint: entrypointSchema,
  validation: validationSchema.optional(),
  cache_mounts: z.array(cacheMountSchema).optional(),
  data_sources: z.array(dataSourceSchema).optional(),
  services: z.array(serviceSchema).optional(),
};
// Top-level unknown keys are warnings (the full schema is not public), so they are allowed here
// and reported separately; inside known sections the shape is strict.
const manifestSchema = z.object(shape);

export type ComputalotManifest = z.infer<typeof manifestSchema>;
export type ValidationCommand = z.infer<typeof namedCommand>;

const docs: Record<string, FieldDoc> = {
  version: { expected: 'the number 1 (the only manifest version)', fix: () => '"version": 1' },
  name: { expected: PROJECT_NAME_RULE, fix: (raw) => (typeof raw === 'string' ? `"name": ${JSON.stringify(toProjectName(raw))}` : undefined) },
  runtime: { expected: 'an object such as {"kind": "oci", "sandbox": "gvisor", "workdir": "/workspace"}' },
  'runtime.kind': { expected: '"oci" (the only runtime kind)', fix: () => '"kind": "oci"' },
  'runtime.sandbox': { expected: 'a sandbox name such as "gvisor"' },
  'runtime.workdir': { expected: 'an absolute path inside the image such as "/workspace"', fix: (raw) => (typeof raw === 'string' ? `"workdir": ${JSON.stringify('/' + raw.replace(/^\.?\/*/, ''))}` : undefined) },
  entrypoint: { expected: 'an object such as {"command": ["python", "job.py"]}' },
  'entrypoint.command': {
    expected: 'a non-empty array of strings, e.g. ["python", "job.py"]',
    fix: (raw) => (typeof raw === 'string' && raw.trim() !== '' ? `"command": ${JSON.stringify(raw.trim().split(/\s+/))}` : undefined),
  },
  'entrypoint.command[]': { expected: 'a non-empty string' },
  'entrypoint.env': { expected: 'an object of strings' },
  'validation.executables': { expected: 'an array of program names that must be on PATH, e.g. ["python"]' },
  'validation.files': { expected: 'an array of paths that must exist in the image' },
  'validation.commands': { expected: 'an array of commands that must exit 0' },
  'validation.commands[]': { expected: 'a command array such as ["python", "-c", "import numpy"] or {"name": "…", "command": [...]}' },
  'cache_mounts[].path': { expected: 'an absolute path inside the container' },
  'data_sources[].path': { expected: 'an absolute path inside the container' },
};

function docFor(fieldPath: FieldPath): FieldDoc | undefined {
  const key = fieldPath.map((p) => (typeof p === 'number' ? '[]' : p)).join('.').replace(/\.\[\]/g, '[]');
  return docs[key];
}

function keysFor(fieldPath: FieldPath): readonly string[] {
  const objects: Record<string, readonly string[]> = {
    '': Object.keys(shape),
    runtime: Object.keys(runtimeSchema.shape),
    entrypoint: Object.keys(entrypointSchema.shape),
    validation: Object.keys(validationSchema.shape),
    'cache_mounts[]': Object.keys(cacheMountSchema.shape),
    'data_sources[]': Object.keys(dataSourceSchema.shape),
    'services[]': Object.keys(serviceSchema.shape),
    'validation.commands[]': Object.keys(namedCommand.shape),
  };
  const key = fieldPath.map((p) => (typeof p === 'number' ? '[]' : p)).join('.').replace(/\.\[\]/g, '[]');
  return objects[key] ?? [];
}

export interface ParsedComputalotManifest {
  manifest?: ComputalotManifest;
  diagnostics: Diagnostic[];
}

export function parseComputalotManifest(text: string, file = COMPUTALOT_MANIFEST_PATH): ParsedComputalotManifest {
  const diagnostics: Diagnostic[] = [];
  let body = text;
  if (body.charCodeAt(0) === 0xfeff) {
    // Strict JSON parsers (Python's json, Go's encoding/json) reject a BOM: so would the platform.
    diagnostics.push(diagnostic('error', file, { line: 1, column: 1 }, '', 'the file starts with a UTF-8 byte order mark (BOM), which JSON does not allow', 'save the file as UTF-8 without BOM'));
    body = body.slice(1);
  }
  const parsed = parseJsonWithPositions(body);
  if (parsed.errors.length > 0) {
    for (const e of parsed.errors) diagnostics.push(diagnostic('error', file, e.at, '', `JSON syntax error: ${e.message}`, 'fix the JSON syntax (no comments, no trailing commas, keys in double quotes)'));
    return { diagnostics };
  }
  const document = parsed.value;
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    diagnostics.push(diagnostic('error', file, { line: 1, column: 1 }, '', `expected a JSON object, got ${jsonTypeName(document)}`, 'start from {"version": 1, "runtime": {"kind": "oci"}, "entrypoint": {"command": ["python", "job.py"]}}'));
    return { diagnostics };
  }
  const record = document as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!(key in shape)) {
      diagnostics.push(
        ...issuesToDiagnostics([{ code: 'unrecognized_keys', keys: [key], path: [], message: '', input: record } as z.core.$ZodIssue], {
          file,
          positions: parsed.positions,
          root: record,
          docFor,
          keysFor,
          typeName: jsonTypeName,
          assignment: (k, v) => `"${k}": ${v}`,
          container: (p) => `"${formatFieldPath(p)}"`,
          unknownKeySeverity: () => 'warning',
        }).map((d) => ({ ...d, message: `${d.message} (not part of the known schema; ignored)` })),
      );
    }
  }
  const result = manifestSchema.safeParse(record);
  if (!result.success) {
    diagnostics.push(
      ...issuesToDiagnostics(result.error.issues, {
        file,
        positions: parsed.positions,
        root: record,
        docFor,
        keyDocFor: (p) => (p.includes('env') ? { expected: ENV_NAME_RULE, fix: (raw) => (typeof raw === 'string' ? `rename it to ${toEnvName(raw)}` : undefined) } : undefined),
        keysFor,
        typeName: jsonTypeName,
        assignment: (k, v) => `"${k}": ${v}`,
        container: (p) => `"${formatFieldPath(p)}"`,
      }),
    );
    return { diagnostics };
  }
  const manifest = result.data;
  if (manifest.runtime.sandbox !== undefined && !KNOWN_SANDBOXES.includes(manifest.runtime.sandbox)) {
    diagnostics.push(
      diagnostic('warning', file, parsed.positions.valueOf(['runtime', 'sandbox']), ['runtime', 'sandbox'], `unknown sandbox ${JSON.stringify(manifest.runtime.sandbox)}; known: ${KNOWN_SANDBOXES.join(', ')}`, 'use "gvisor" unless the platform told you otherwise'),
    );
  }
  return { manifest, diagnostics };
}
