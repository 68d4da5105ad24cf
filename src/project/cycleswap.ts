import { parse as parseToml, TomlError } from 'smol-toml';
import * as z from 'zod';
import { diagnostic, sortDiagnostics, type Diagnostic } from './diagnostics.js';
import { formatFieldPath, type FieldPath, type Position, type PositionMap } from './positions.js';
import { findTomlDuplicates, indexTomlPositions, type TomlDuplicate } from './toml-positions.js';
import { issuesToDiagnostics, preview, type FieldDoc } from './zod-diagnostics.js';
import {
  BUILTIN_VOLUME_PREFIX,
  ENV_NAME_PATTERN,
  ENV_NAME_RULE,
  MANIFEST_VOLUME_PATTERN,
  MANIFEST_VOLUME_RULE,
  PROJECT_NAME_PATTERN,
  PROJECT_NAME_RULE,
  toEnvName,
  toProjectName,
} from './names.js';
import { suggest } from '../util/suggest.js';

import { MANIFEST_PATH } from './paths.js';

export { BUILD_SCRIPT_PATH, MANIFEST_PATH, RUN_SCRIPT_PATH } from './paths.js';

export const UBUNTU_VERSIONS = ['22.04', '24.04', '25.04', '25.10', '26.04'] as const;
export type UbuntuVersion = (typeof UBUNTU_VERSIONS)[number];
/** The image sections the platform supports; exactly one must be present. */
export const IMAGE_SECTIONS = ['ubuntu'] as const;
/** Tables that are clearly meant as an image section, though not supported (yet). */
const OTHER_IMAGE_SECTIONS = [
  'debian',
  'fedora',
  'alpine',
  'centos',
  'rockylinux',
  'almalinux',
  'archlinux',
  'amazonlinux',
  'python',
  'cuda',
  'nvidia',
  'image',
];
export const ARTIFACT_ORDERS = ['FIFO', 'LIFO'] as const;
export type ArtifactOrder = (typeof ARTIFACT_ORDERS)[number];

/** Variables the platform sets itself; a manifest may not override them. */
export const RESERVED_ENV_VARS = [
  'INSIDE_CYCLESWAP_CONTAINER',
  'CYCLE_ARTIFACTS_DIR',
  'COMPUTALOT_TASK_PAYLOAD',
  'COMPUTALOT_TASK_RESULT',
  'COMPUTALOT_ARTIFACT_DIR',
];

const CUDA_PATTERN = /^\d+\.\d+$/;

const mainSchema = z.strictObject({
  name: z.string().regex(PROJECT_NAME_PATTERN),
  volumes: z.array(z.string().regex(MANIFEST_VOLUME_PATTERN)).default([]),
  build_files: z.array(z.string().min(1)).default([]),
});

const ubuntuSchema = z.strictObject({ version: z.enum(UBUNTU_VERSIONS) });

const jobSchema = z.strictObject({
  cuda: z.string().regex(CUDA_PATTERN).optional(),
  env_vars: z.record(z.string().regex(ENV_NAME_PATTERN), z.string()).default({}),
  email_on_success: z.boolean(),
  email_on_failure: z.boolean(),
  artifact_upload_order: z.enum(ARTIFACT_ORDERS).default('FIFO'),
});

export interface CycleswapManifest {
  main: z.infer<typeof mainSchema>;
  image: { kind: 'ubuntu'; version: UbuntuVersion; ref: string };
  job: z.infer<typeof jobSchema>;
}

const TOP_LEVEL = ['main', 'job', ...IMAGE_SECTIONS];

const docs: Record<string, FieldDoc> = {
  'main.name': { expected: PROJECT_NAME_RULE, fix: (raw) => (typeof raw === 'string' ? `name = ${JSON.stringify(toProjectName(raw))}` : undefined) },
  'main.volumes': { expected: 'an array of volume names, e.g. ["training-data", "builtin/stable-diffusion-v1-5"]' },
  'main.volumes[]': {
    expected: MANIFEST_VOLUME_RULE,
    fix: (raw) =>
      typeof raw === 'string'
        ? `use ${JSON.stringify(raw.startsWith(BUILTIN_VOLUME_PREFIX) ? BUILTIN_VOLUME_PREFIX + toProjectName(raw.slice(BUILTIN_VOLUME_PREFIX.length)) : toProjectName(raw))}`
        : undefined,
  },
  'main.build_files': { expected: 'an array of paths relative to the project root, e.g. ["pyproject.toml"]' },
  'main.build_files[]': { expected: 'a non-empty path relative to the project root' },
  'ubuntu.version': {
    expected: `one of ${UBUNTU_VERSIONS.map((v) => JSON.stringify(v)).join(', ')}`,
    fix: (raw) => {
      const text = typeof raw === 'number' ? raw.toFixed(2) : String(raw);
      const hit = suggest(text, UBUNTU_VERSIONS);
      return hit !== undefined ? `did you mean version = ${JSON.stringify(hit)}?` : `use version = "24.04"`;
    },
  },
  'job.cuda': { expected: 'a CUDA version "MAJOR.MINOR" such as "12.4"', fix: (raw) => cudaFix(raw) },
  'job.env_vars': { expected: 'a table of strings, e.g. { LEARNING_RATE = "3e-4" }' },
  'job.env_vars.*': {
    expected: ENV_NAME_RULE,
    fix: (raw) => (typeof raw === 'string' ? `rename it to ${toEnvName(raw)}` : undefined),
  },
  'job.env_vars.*=': { expected: 'a string (environment values are text)' },
  'job.email_on_success': { expected: 'true or false' },
  'job.email_on_failure': { expected: 'true or false' },
  'job.artifact_upload_order': { expected: '"FIFO" (order written) or "LIFO" (newest first)' },
};

function docFor(path: FieldPath): FieldDoc | undefined {
  if (path[0] === 'job' && path[1] === 'env_vars' && path.length === 3) return docs['job.env_vars.*='];
  const key = path
    .map((p) => (typeof p === 'number' ? '[]' : p))
    .join('.')
    .replace(/\.\[\]/g, '[]');
  return docs[key];
}

/** The key-rule doc for a bad record key (env var name). */
function keyDocFor(path: FieldPath): FieldDoc | undefined {
  if (path[0] === 'job' && path[1] === 'env_vars') return docs['job.env_vars.*'];
  return undefined;
}

function keysFor(path: FieldPath): readonly string[] {
  if (path.length === 0) return TOP_LEVEL;
  const shapes: Record<string, readonly string[]> = {
    main: Object.keys(mainSchema.shape),
    ubuntu: Object.keys(ubuntuSchema.shape),
    job: Object.keys(jobSchema.shape),
  };
  return shapes[String(path[0])] ?? [];
}

export function cudaFix(raw: unknown): string | undefined {
  const text = typeof raw === 'number' ? String(raw) : typeof raw === 'string' ? raw : undefined;
  if (text === undefined) return 'write it as a quoted string: cuda = "12.4"';
  const match = /(\d+)(?:\.(\d+))?/.exec(text);
  if (!match) return 'write it as cuda = "12.4"';
  const suggestion = `${match[1]}.${match[2] ?? '0'}`;
  return `did you mean cuda = ${JSON.stringify(suggestion)}?`;
}

export function tomlTypeName(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (value instanceof Date) return 'date-time';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'float';
  if (typeof value === 'bigint') return 'integer';
  if (typeof value === 'object' && value !== null) return 'table';
  return typeof value;
}

export interface ParsedCycleswapManifest {
  manifest?: CycleswapManifest;
  diagnostics: Diagnostic[];
  /**
   * The string entries of `[main].build_files` as written (by index), even when other fields
   * are invalid, so the loader can check the files in the same pass.
   */
  buildFileEntries: Array<{ index: number; entry: string }>;
  positions?: PositionMap;
}

/**
 * Parses and validates manifest.toml text. Every problem is reported, not just the first;
 * filesystem rules (build_files exist, stay inside the root) are checked by the loader.
 */
export function parseCycleswapManifest(text: string, file = MANIFEST_PATH): ParsedCycleswapManifest {
  const parsed = parseManifestText(text, file);
  return { ...parsed, diagnostics: sortDiagnostics(parsed.diagnostics) };
}

function parseManifestText(text: string, file: string): ParsedCycleswapManifest {
  const diagnostics: Diagnostic[] = [];
  const hasBom = text.charCodeAt(0) === 0xfeff;
  const body = hasBom ? text.slice(1) : text;
  if (hasBom) {
    diagnostics.push(
      diagnostic(
        'warning',
        file,
        { line: 1, column: 1 },
        '',
        'the file starts with a UTF-8 byte order mark (BOM); it is ignored',
        'save the file as UTF-8 without BOM',
      ),
    );
  }
  let document: Record<string, unknown>;
  try {
    document = parseToml(body) as Record<string, unknown>;
  } catch (error) {
    if (error instanceof TomlError) {
      const reason = error.message.split('\n')[0]!.replace(/^Invalid TOML document:\s*/, '');
      const duplicate = /redefine/.test(reason) ? findTomlDuplicates(body).find((d) => d.second.line === error.line) : undefined;
      if (duplicate) {
        diagnostics.push(duplicateDiagnostic(file, duplicate));
        return { diagnostics, buildFileEntries: [] };
      }
      diagnostics.push(diagnostic('error', file, { line: error.line, column: error.column }, '', `TOML syntax error: ${reason}`, syntaxHint(reason)));
      return { diagnostics, buildFileEntries: [] };
    }
    throw error;
  }
  const positions = indexTomlPositions(body);
  const main = document.main as Record<string, unknown> | undefined;
  const buildFileEntries = Array.isArray(main?.build_files)
    ? (main.build_files as unknown[]).flatMap((entry, index) => (typeof entry === 'string' && entry !== '' ? [{ index, entry }] : []))
    : [];
  const issueContext = {
    file,
    positions,
    root: document,
    docFor,
    keyDocFor,
    keysFor,
    typeName: tomlTypeName,
    assignment: (key: string, example: string) => `${key} = ${example}`,
    container: (path: FieldPath) => `[${formatFieldPath(path)}]`,
  };

  // The image section: exactly one. A table named like another OS or image counts as an image
  // section (so `[ubuntu]` + `[debian]` is "two image sections"); other unknown tables are typos.
  const imageSections = Object.keys(document).filter((key) => (IMAGE_SECTIONS as readonly string[]).includes(key) || OTHER_IMAGE_SECTIONS.includes(key));
  for (const key of Object.keys(document)) {
    if (TOP_LEVEL.includes(key)) continue;
    const value = document[key];
    const isTable = typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
    if (OTHER_IMAGE_SECTIONS.includes(key)) {
      diagnostics.push(
        diagnostic(
          'error',
          file,
          positions.keyOf([key]),
          [key],
          `[${key}] is not a supported image section; supported: ${IMAGE_SECTIONS.map((s) => `[${s}]`).join(', ')}`,
          `use [ubuntu] with version = one of ${UBUNTU_VERSIONS.join(', ')}`,
        ),
      );
      continue;
    }
    const hit = suggest(key, TOP_LEVEL);
    diagnostics.push(
      diagnostic(
        'error',
        file,
        positions.keyOf([key]),
        [key],
        isTable ? `unknown section [${key}]; expected [main], [job] and one image section ([ubuntu])` : `unknown top-level key \`${key}\``,
        hit !== undefined ? `did you mean [${hit}]?` : isTable ? `remove [${key}]` : `move \`${key}\` into [main] or [job]`,
      ),
    );
  }
  if (imageSections.length === 0) {
    diagnostics.push(
      diagnostic('error', file, { line: 1, column: 1 }, 'ubuntu', 'no image section; exactly one is required', 'add:\n      [ubuntu]\n      version = "24.04"'),
    );
  } else if (imageSections.length > 1) {
    const where = imageSections.map((s) => `[${s}] at line ${positions.keyOf([s]).line}`).join(' and ');
    diagnostics.push(
      diagnostic(
        'error',
        file,
        positions.keyOf([imageSections[1]!]),
        imageSections[1]!,
        `${imageSections.length} image sections: ${where}; exactly one is allowed`,
        'keep one image section',
      ),
    );
  }

  const mainResult = validateTable(document, 'main', mainSchema, issueContext, diagnostics);
  const jobResult = validateTable(document, 'job', jobSchema, issueContext, diagnostics);
  const ubuntuResult = document.ubuntu === undefined ? undefined : validateTable(document, 'ubuntu', ubuntuSchema, issueContext, diagnostics);

  if (jobResult) {
    for (const name of Object.keys(jobResult.env_vars)) {
      if (RESERVED_ENV_VARS.includes(name)) {
        diagnostics.push(
          diagnostic(
            'error',
            file,
            positions.keyOf(['job', 'env_vars', name]),
            ['job', 'env_vars', name],
            `${name} is set by the platform and cannot be overridden`,
            `remove ${name} from env_vars`,
          ),
        );
      }
    }
  }
  if (mainResult) {
    const seen = new Map<string, number>();
    mainResult.build_files.forEach((entry, index) => {
      const first = seen.get(entry);
      if (first !== undefined) {
        diagnostics.push(
          diagnostic(
            'warning',
            file,
            positions.valueOf(['main', 'build_files', index]),
            ['main', 'build_files', index],
            `${preview(entry)} is listed twice (also at index ${first})`,
            'remove the duplicate',
          ),
        );
      } else seen.set(entry, index);
    });
    const volumes = new Set<string>();
    mainResult.volumes.forEach((name, index) => {
      if (volumes.has(name)) {
        diagnostics.push(
          diagnostic(
            'error',
            file,
            positions.valueOf(['main', 'volumes', index]),
            ['main', 'volumes', index],
            `volume ${preview(name)} is listed twice`,
            'remove the duplicate',
          ),
        );
      }
      volumes.add(name);
    });
  }

  const ok = mainResult && jobResult && ubuntuResult && imageSections.length === 1 && !diagnostics.some((d) => d.severity === 'error');
  if (!ok) return { diagnostics, buildFileEntries, positions };
  return {
    buildFileEntries,
    positions,
    manifest: {
      main: mainResult,
      image: { kind: 'ubuntu', version: ubuntuResult.version, ref: `ubuntu:${ubuntuResult.version}` },
      job: jobResult,
    },
    diagnostics,
  };
}

function validateTable<T extends z.ZodType>(
  document: Record<string, unknown>,
  key: string,
  schema: T,
  issueContext: Parameters<typeof issuesToDiagnostics>[1],
  diagnostics: Diagnostic[],
): z.infer<T> | undefined {
  const value = document[key];
  if (value === undefined) {
    diagnostics.push(diagnostic('error', issueContext.file, { line: 1, column: 1 }, key, `missing section [${key}]`, sectionExample(key)));
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Date) {
    diagnostics.push(
      diagnostic(
        'error',
        issueContext.file,
        issueContext.positions.valueOf([key]),
        key,
        `expected a table [${key}], got ${tomlTypeName(value)} ${preview(value)}`,
        sectionExample(key),
      ),
    );
    return undefined;
  }
  const result = schema.safeParse(value);
  if (result.success) return result.data as z.infer<T>;
  const issues = result.error.issues.map((issue) => ({ ...issue, path: [key, ...issue.path] }));
  diagnostics.push(...issuesToDiagnostics(issues as z.core.$ZodIssue[], issueContext));
  return undefined;
}

function sectionExample(key: string): string {
  switch (key) {
    case 'main':
      return 'add:\n      [main]\n      name = "my-project"';
    case 'job':
      return 'add:\n      [job]\n      email_on_success = false\n      email_on_failure = false';
    default:
      return 'add:\n      [ubuntu]\n      version = "24.04"';
  }
}

function duplicateDiagnostic(file: string, duplicate: TomlDuplicate): Diagnostic {
  const name = formatFieldPath(duplicate.path);
  const what = duplicate.kind === 'table' ? `table [${name}]` : `key \`${String(duplicate.path[duplicate.path.length - 1])}\``;
  const where = duplicate.kind === 'key' && duplicate.path.length > 1 ? ` in [${formatFieldPath(duplicate.path.slice(0, -1))}]` : '';
  const sameLine = duplicate.first.line === duplicate.second.line;
  const at = (p: Position): string => (sameLine ? `line ${p.line}, column ${p.column}` : `line ${p.line}`);
  return diagnostic(
    'error',
    file,
    duplicate.second,
    duplicate.path,
    `${what}${where} is defined twice: at ${at(duplicate.first)} and again at ${at(duplicate.second)}`,
    duplicate.kind === 'table'
      ? `each [table] may appear only once; merge the keys under line ${duplicate.second.line} into the [${name}] of line ${duplicate.first.line}`
      : `keep one of the two definitions (${sameLine ? `line ${duplicate.first.line}` : `lines ${duplicate.first.line} and ${duplicate.second.line}`})`,
  );
}

function syntaxHint(reason: string): string {
  if (/redefine/.test(reason)) return 'each [table] and key may appear only once; merge the two definitions';
  if (/control characters|unterminated|end of/i.test(reason)) return 'close the string with a matching quote on the same line (use """ for multi-line strings)';
  if (/invalid value/.test(reason)) return 'give the key a value: strings in quotes, true/false, numbers, [arrays] or { inline tables }';
  return 'see https://toml.io/en/v1.0.0 for the syntax';
}
