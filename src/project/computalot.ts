import path from 'node:path';
import * as z from 'zod';
import { diagnostic, hasErrors, type Diagnostic } from './diagnostics.js';
import { isInside } from '../util/paths.js';
import { jsonTypeName, parseJsonWithPositions } from './json-positions.js';
import { formatFieldPath, type FieldPath, type Position } from './positions.js';
import { issuesToDiagnostics, type FieldDoc } from './zod-diagnostics.js';
import { ENV_NAME_PATTERN, ENV_NAME_RULE, PROJECT_NAME_PATTERN, PROJECT_NAME_RULE, VOLUME_NAME_PATTERN, toEnvName, toProjectName } from './names.js';

import { COMPUTALOT_MANIFEST_PATH, DEFAULT_BUILD_CONTEXT, DEFAULT_DOCKERFILE } from './paths.js';

export { COMPUTALOT_MANIFEST_PATH } from './paths.js';
/** The only sandbox the platform runs public jobs in; a manifest without one gets a warning. */
export const SANDBOX = 'gvisor';
export const SERVICE_SCOPES = ['project', 'task'] as const;
export const SERVICE_RESTART_POLICIES = ['never', 'on_failure', 'always'] as const;
/** How long a service may take to pass its healthcheck when the manifest does not say (cycle's choice; the docs are silent). */
export const DEFAULT_READY_TIMEOUT_S = 60;
/** `docker build --build-arg KEY=VALUE`: a key cannot hold "=" or spaces. */
const BUILD_ARG_NAME_PATTERN = /^[^=\s]+$/;

const absolutePath = z.string().refine((p) => path.posix.isAbsolute(p), { message: 'absolute' });
const commandArray = z.array(z.string().min(1)).min(1);
const envRecord = z.record(z.string().regex(ENV_NAME_PATTERN), z.string());

/** Relative to the project root and inside it: no absolute path, no `..` step out. */
function isInsideProject(relative: string): boolean {
  if (relative.includes('\0') || path.posix.isAbsolute(relative) || path.win32.isAbsolute(relative)) return false;
  const normalized = path.posix.normalize(relative.replace(/\\/g, '/'));
  return normalized !== '..' && !normalized.startsWith('../');
}
const projectPath = z.string().min(1).refine(isInsideProject, { message: 'inside the project' });

const buildShape = z.strictObject({
  /** Relative to the project root, like the context; default `<context>/Dockerfile`, as `docker build <context>` does. */
  dockerfile: projectPath.optional(),
  context: projectPath.default(DEFAULT_BUILD_CONTEXT),
  target: z.string().min(1).optional(),
  args: z.record(z.string().regex(BUILD_ARG_NAME_PATTERN), z.string()).default({}),
});
const buildSchema = buildShape
  .transform(({ dockerfile, context, ...rest }) => ({ ...rest, context, dockerfile: dockerfile ?? path.posix.join(context, DEFAULT_DOCKERFILE) }))
  .prefault({});

/** A validation check as the docs write it, `{label, command}`; `name` is the spelling cycle accepted before. */
const labeledCheck = z.strictObject({
  label: z.string().min(1).optional(),
  name: z.string().min(1).optional(),
  command: commandArray,
  timeout_s: z.number().positive().optional(),
});
// A bare command array (accepted since the first cycle) is a check without a label.
const validationCheck = z
  .preprocess((value) => (Array.isArray(value) ? { command: value } : value), labeledCheck)
  .transform(({ label, name, command, timeout_s }) => ({
    label: label ?? name ?? command.join(' '),
    command,
    ...(timeout_s === undefined ? {} : { timeout_s }),
  }));

const validationSchema = z.strictObject({
  executables: z.array(z.string().min(1)).default([]),
  files: z.array(z.string().min(1)).default([]),
  commands: z.array(validationCheck).default([]),
});

const initCommandSchema = z.strictObject({
  label: z.string().min(1).optional(),
  command: commandArray,
  /** Relative to `runtime.workdir`, or absolute. */
  cwd: z.string().min(1).optional(),
  env: envRecord.default({}),
});
const initSchema = z.strictObject({ commands: z.array(initCommandSchema).default([]) });

const serviceSchema = z.strictObject({
  // Names show in logs and errors: the project-name charset.
  name: z.string().regex(PROJECT_NAME_PATTERN),
  command: commandArray,
  scope: z.enum(SERVICE_SCOPES).default('task'),
  restart: z.enum(SERVICE_RESTART_POLICIES).default('never'),
  cwd: z.string().min(1).optional(),
  env: envRecord.default({}),
  ready_timeout_s: z.number().positive().default(DEFAULT_READY_TIMEOUT_S),
  healthcheck: z.strictObject({ command: commandArray }).optional(),
});

const runtimeSchema = z.strictObject({
  kind: z.literal('oci'),
  sandbox: z.literal(SANDBOX).optional(),
  workdir: absolutePath,
  init: initSchema.optional(),
  services: z.array(serviceSchema).default([]),
});

const entrypointSchema = z.strictObject({
  command: commandArray,
  env: envRecord.optional(),
});

const cacheMountSchema = z.strictObject({ path: absolutePath, name: z.string().regex(VOLUME_NAME_PATTERN).optional() });
const dataSourceSchema = z.strictObject({ name: z.string().regex(VOLUME_NAME_PATTERN), uri: z.string().min(1), path: absolutePath });

const shape = {
  version: z.literal(1),
  name: z.string().regex(PROJECT_NAME_PATTERN).optional(),
  build: buildSchema,
  runtime: runtimeSchema,
  entrypoint: entrypointSchema,
  validation: validationSchema.optional(),
  cache_mounts: z.array(cacheMountSchema).optional(),
  data_sources: z.array(dataSourceSchema).optional(),
};
// Top-level unknown keys are warnings (the full schema is not public), so they are allowed here
// and reported separately; inside known sections the shape is strict.
const manifestSchema = z.object(shape);

export type ComputalotManifest = z.infer<typeof manifestSchema>;
/** How the image is built: `docker build -f <dockerfile> [--target] [--build-arg]... <context>` at the project root. */
export type BuildSettings = z.infer<typeof buildSchema>;
/** A validation check, labelled (the label names it when it fails). */
export type ValidationCommand = z.infer<typeof validationCheck>;
export type InitCommand = z.infer<typeof initCommandSchema>;
export type Service = z.infer<typeof serviceSchema>;
export type ServiceScope = Service['scope'];
export type ServiceRestartPolicy = Service['restart'];

const PATH_IN_PROJECT = 'a path relative to the project root that stays inside it';
const docs: Record<string, FieldDoc> = {
  version: { expected: 'the number 1 (the only manifest version)', fix: () => '"version": 1' },
  name: { expected: PROJECT_NAME_RULE, fix: (raw) => (typeof raw === 'string' ? `"name": ${JSON.stringify(toProjectName(raw))}` : undefined) },
  build: { expected: 'an object such as {"dockerfile": "Dockerfile", "context": ".", "target": "runtime", "args": {"PYTHON_VERSION": "3.11"}}' },
  'build.dockerfile': { expected: `${PATH_IN_PROJECT}, e.g. "Dockerfile" or "docker/Dockerfile"`, fix: (raw) => relativeFix('dockerfile', raw) },
  'build.context': { expected: `${PATH_IN_PROJECT}, e.g. "."`, fix: (raw) => relativeFix('context', raw) },
  'build.target': { expected: 'the name of a build stage (FROM … AS <name>) in the Dockerfile' },
  'build.args': { expected: 'an object of strings, e.g. {"PYTHON_VERSION": "3.11"}' },
  'build.args.*': {
    expected: 'a string (build arguments are text)',
    fix: (raw) => (typeof raw === 'number' || typeof raw === 'boolean' ? `quote the value: ${JSON.stringify(String(raw))}` : undefined),
  },
  runtime: { expected: 'an object such as {"kind": "oci", "sandbox": "gvisor", "workdir": "/workspace"}' },
  'runtime.kind': { expected: '"oci" (the only runtime kind)', fix: () => '"kind": "oci"' },
  'runtime.sandbox': { expected: `"${SANDBOX}" (the only sandbox; public execution requires it)`, fix: () => `"sandbox": "${SANDBOX}"` },
  'runtime.workdir': {
    example: '"/workspace"',
    expected: 'an absolute path inside the image such as "/workspace"',
    fix: (raw) => (typeof raw === 'string' ? `"workdir": ${JSON.stringify('/' + raw.replace(/^\.?\/*/, ''))}` : 'add "workdir": "/workspace" to "runtime"'),
  },
  'runtime.init': { expected: 'an object such as {"commands": [{"label": "sync deps", "command": ["uv", "sync"]}]}' },
  'runtime.init.commands': { expected: 'an array of {"label", "command", "cwd", "env"} objects' },
  'runtime.init.commands[]': { expected: 'an object such as {"label": "sync deps", "command": ["uv", "sync"]}' },
  'runtime.init.commands[].label': {
    expected: 'a non-empty string naming the step',
    fix: () => 'name the step, e.g. "label": "sync deps", or remove "label" (the command then names it)',
  },
  'runtime.init.commands[].command': {
    example: '["uv", "sync"]',
    expected: 'a non-empty array of strings, e.g. ["uv", "sync"]',
    fix: (raw) => commandFix(raw),
  },
  'runtime.init.commands[].command[]': { expected: 'a non-empty string' },
  'runtime.init.commands[].cwd': { expected: 'a folder, relative to runtime.workdir or absolute' },
  'runtime.init.commands[].env': { expected: 'an object of strings' },
  'runtime.services': { expected: 'an array of services such as {"name": "embedder", "command": ["python", "-m", "embedder"]}' },
  'runtime.services[]': { expected: 'an object such as {"name": "embedder", "command": ["python", "-m", "embedder"]}' },
  'runtime.services[].name': {
    example: '"embedder"',
    expected: PROJECT_NAME_RULE,
    fix: (raw) => (typeof raw === 'string' ? `"name": ${JSON.stringify(toProjectName(raw))}` : undefined),
  },
  'runtime.services[].command': {
    example: '["python", "-m", "embedder"]',
    expected: 'a non-empty array of strings, e.g. ["python", "-m", "embedder"]',
    fix: (raw) => commandFix(raw),
  },
  'runtime.services[].command[]': { expected: 'a non-empty string' },
  'runtime.services[].scope': { expected: `${SERVICE_SCOPES.map((s) => `"${s}"`).join(' or ')} (default "task": one service per task)` },
  'runtime.services[].restart': { expected: `one of ${SERVICE_RESTART_POLICIES.map((s) => `"${s}"`).join(', ')} (default "never")` },
  'runtime.services[].cwd': { expected: 'a folder, relative to runtime.workdir or absolute' },
  'runtime.services[].env': { expected: 'an object of strings' },
  'runtime.services[].ready_timeout_s': {
    expected: `a number of seconds greater than 0 (default ${DEFAULT_READY_TIMEOUT_S})`,
    fix: (raw) => (typeof raw === 'string' && Number(raw) > 0 ? `write it without quotes: "ready_timeout_s": ${Number(raw)}` : undefined),
  },
  'runtime.services[].healthcheck': { expected: 'an object such as {"command": ["curl", "-fsS", "http://127.0.0.1:8080/health"]}' },
  'runtime.services[].healthcheck.command': {
    example: '["python", "-c", "print(1)"]',
    expected: 'a non-empty array of strings that exits 0 once the service is ready',
    fix: (raw) => commandFix(raw),
  },
  entrypoint: { expected: 'an object such as {"command": ["python", "job.py"]}' },
  'entrypoint.command': { example: '["python", "job.py"]', expected: 'a non-empty array of strings, e.g. ["python", "job.py"]', fix: (raw) => commandFix(raw) },
  'entrypoint.command[]': { expected: 'a non-empty string' },
  'entrypoint.env': { expected: 'an object of strings' },
  validation: {
    expected:
      'an object such as {"executables": ["python"], "files": ["job.py"], "commands": [{"label": "numpy import", "command": ["python", "-c", "import numpy"]}]}',
  },
  'validation.executables': { expected: 'an array of program names that must be on PATH, e.g. ["python"]' },
  'validation.files': { expected: 'an array of paths that must exist in the image' },
  'validation.commands': { expected: 'an array of checks that must exit 0, e.g. [{"label": "numpy import", "command": ["python", "-c", "import numpy"]}]' },
  'validation.commands[]': {
    expected: 'a check {"label": "numpy import", "command": ["python", "-c", "import numpy"]} (or a bare command array)',
    fix: (raw) =>
      typeof raw === 'string' && raw.trim() !== ''
        ? `{"label": ${JSON.stringify(raw.trim())}, "command": ${JSON.stringify(raw.trim().split(/\s+/))}}`
        : undefined,
  },
  'validation.commands[].label': {
    expected: 'a non-empty string naming the check',
    fix: () => 'name the check, e.g. "label": "numpy import", or remove "label" (the command then names it)',
  },
  'validation.commands[].name': { expected: 'a non-empty string naming the check (the older spelling of "label")' },
  'validation.commands[].command': {
    example: '["python", "-c", "import numpy"]',
    expected: 'a non-empty array of strings, e.g. ["python", "-c", "import numpy"]',
    fix: (raw) => commandFix(raw),
  },
  'validation.commands[].command[]': { expected: 'a non-empty string' },
  'validation.commands[].timeout_s': { expected: 'a number of seconds greater than 0' },
  'cache_mounts[].path': { expected: 'an absolute path inside the container' },
  'data_sources[].path': { expected: 'an absolute path inside the container' },
};

function commandFix(raw: unknown): string | undefined {
  return typeof raw === 'string' && raw.trim() !== '' ? `"command": ${JSON.stringify(raw.trim().split(/\s+/))}` : undefined;
}

function relativeFix(key: string, raw: unknown): string | undefined {
  if (typeof raw !== 'string') return undefined;
  if (raw === '') return `"${key}": "${key === 'context' ? '.' : 'Dockerfile'}"`;
  return `write it relative to the project root, e.g. "${key}": "${key === 'context' ? '.' : 'Dockerfile'}", and keep the files inside the project`;
}

/** `runtime.services[].name` for `["runtime", "services", 0, "name"]`. */
function docKey(fieldPath: FieldPath): string {
  return fieldPath
    .map((p) => (typeof p === 'number' ? '[]' : p))
    .join('.')
    .replace(/\.\[\]/g, '[]');
}

function docFor(fieldPath: FieldPath): FieldDoc | undefined {
  if (fieldPath[0] === 'build' && fieldPath[1] === 'args' && fieldPath.length === 3) return docs['build.args.*'];
  return docs[docKey(fieldPath)];
}

/** The rule for a bad key of a record: env var names, build-arg names. */
function keyDocFor(fieldPath: FieldPath): FieldDoc | undefined {
  if (fieldPath[0] === 'build' && fieldPath[1] === 'args') return { expected: 'a build argument name (no "=" or spaces), as in ARG NAME in the Dockerfile' };
  if (fieldPath.includes('env')) return { expected: ENV_NAME_RULE, fix: (raw) => (typeof raw === 'string' ? `rename it to ${toEnvName(raw)}` : undefined) };
  return undefined;
}

function keysFor(fieldPath: FieldPath): readonly string[] {
  const objects: Record<string, readonly string[]> = {
    '': Object.keys(shape),
    build: Object.keys(buildShape.shape),
    runtime: Object.keys(runtimeSchema.shape),
    'runtime.init': Object.keys(initSchema.shape),
    'runtime.init.commands[]': Object.keys(initCommandSchema.shape),
    'runtime.services[]': Object.keys(serviceSchema.shape),
    'runtime.services[].healthcheck': ['command'],
    entrypoint: Object.keys(entrypointSchema.shape),
    validation: Object.keys(validationSchema.shape),
    'validation.commands[]': Object.keys(labeledCheck.shape),
    'cache_mounts[]': Object.keys(cacheMountSchema.shape),
    'data_sources[]': Object.keys(dataSourceSchema.shape),
  };
  return objects[docKey(fieldPath)] ?? [];
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
    diagnostics.push(
      diagnostic(
        'error',
        file,
        { line: 1, column: 1 },
        '',
        'the file starts with a UTF-8 byte order mark (BOM), which JSON does not allow',
        'save the file as UTF-8 without BOM',
      ),
    );
    body = body.slice(1);
  }
  const parsed = parseJsonWithPositions(body);
  if (parsed.errors.length > 0) {
    for (const e of parsed.errors)
      diagnostics.push(
        diagnostic('error', file, e.at, '', `JSON syntax error: ${e.message}`, 'fix the JSON syntax (no comments, no trailing commas, keys in double quotes)'),
      );
    return { diagnostics };
  }
  const document = parsed.value;
  if (typeof document !== 'object' || document === null || Array.isArray(document)) {
    diagnostics.push(
      diagnostic(
        'error',
        file,
        { line: 1, column: 1 },
        '',
        `expected a JSON object, got ${jsonTypeName(document)}`,
        'start from {"version": 1, "runtime": {"kind": "oci", "sandbox": "gvisor", "workdir": "/workspace"}, "entrypoint": {"command": ["python", "job.py"]}}',
      ),
    );
    return { diagnostics };
  }
  const record = document as Record<string, unknown>;
  const reported: FieldPath[] = [];
  for (const duplicate of parsed.duplicates) {
    // The keys inside a twice-written object are not news: the object itself is reported.
    if (reported.some((outer) => outer.every((part, i) => duplicate.path[i] === part))) continue;
    reported.push(duplicate.path);
    const key = String(duplicate.path[duplicate.path.length - 1]);
    const sameLine = duplicate.first.line === duplicate.second.line;
    const at = (p: Position): string => (sameLine ? `line ${p.line}, column ${p.column}` : `line ${p.line}`);
    diagnostics.push(
      diagnostic(
        'warning',
        file,
        duplicate.second,
        duplicate.path,
        `key ${JSON.stringify(key)} is written twice: at ${at(duplicate.first)} and again at ${at(duplicate.second)}; JSON parsers keep the last one`,
        `keep one of the two (${sameLine ? `line ${duplicate.first.line}` : `lines ${duplicate.first.line} and ${duplicate.second.line}`})`,
      ),
    );
  }
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
        }).map((d) => ({
          ...d,
          message: `${d.message} (not part of the known schema; ignored)`,
          // `services` and `init` belong to "runtime" in the documented schema.
          ...(key in runtimeSchema.shape ? { hint: `move ${JSON.stringify(key)} into "runtime"` } : {}),
        })),
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
        keyDocFor,
        keysFor,
        typeName: jsonTypeName,
        assignment: (k, v) => `"${k}": ${v}`,
        container: (p) => `"${formatFieldPath(p)}"`,
      }),
    );
    return { diagnostics };
  }
  const manifest = result.data;
  if (manifest.runtime.sandbox === undefined) {
    diagnostics.push(
      diagnostic(
        'warning',
        file,
        parsed.positions.keyOf(['runtime']),
        ['runtime', 'sandbox'],
        `no sandbox: public execution requires "sandbox": "${SANDBOX}"`,
        `add "sandbox": "${SANDBOX}" to "runtime"`,
      ),
    );
  }
  const { dockerfile, context } = manifest.build;
  if (!isInside(path.posix.normalize(context), path.posix.normalize(dockerfile))) {
    diagnostics.push(
      diagnostic(
        'error',
        file,
        parsed.positions.valueOf(['build', 'dockerfile']),
        ['build', 'dockerfile'],
        `${JSON.stringify(dockerfile)} is outside the build context ${JSON.stringify(context)}; expected a Dockerfile inside the context (both are relative to the project root)`,
        `move the Dockerfile into ${JSON.stringify(context)}, or set "context" to a folder that holds it`,
      ),
    );
  }
  const firstService = new Map<string, number>();
  manifest.runtime.services.forEach((service, index) => {
    const first = firstService.get(service.name);
    if (first === undefined) {
      firstService.set(service.name, index);
      return;
    }
    const firstAt = parsed.positions.valueOf(['runtime', 'services', first, 'name']);
    diagnostics.push(
      diagnostic(
        'error',
        file,
        parsed.positions.valueOf(['runtime', 'services', index, 'name']),
        ['runtime', 'services', index, 'name'],
        `service name ${JSON.stringify(service.name)} is used twice (first at line ${firstAt.line}); expected unique names`,
        'rename one of the two services',
      ),
    );
  });
  if (hasErrors(diagnostics)) return { diagnostics };
  return { manifest, diagnostics };
}
