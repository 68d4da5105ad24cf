import fs from 'node:fs/promises';
import path from 'node:path';
import type { ErrorObject, ValidateFunction } from 'ajv';
import * as z from 'zod';
import { jobTimeoutSeconds, recipeJobRequestSchema, type JobRequest } from '../api/schemas.js';
import { CycleError, ExitCode } from '../errors.js';
import { formatDiagnostic } from '../project/diagnostics.js';
import { checkProjectAt, projectFormatsAt } from '../project/load.js';
import { PROJECT_NAME_PATTERN } from '../project/names.js';
import { COMPUTALOT_MANIFEST_PATH } from '../project/paths.js';
import { gzipDeterministic } from '../pack/gzip.js';
import { selectFiles, toTarEntries } from '../pack/select.js';
import { tarStream } from '../pack/tar.js';
import { DomainError, invalid, malformed, zodError } from './errors.js';
import { recipeProject, type ProjectService } from './projects.js';

/** The operator's description of a recipe, beside its project files. */
export const RECIPE_FILE = 'recipe.json';
/** The JSON Schema every payload of the recipe must match. */
export const PAYLOAD_SCHEMA_FILE = 'payload.schema.json';

const recipeFileSchema = z.strictObject({
  description: z.string().min(1).max(4000),
  operations: z
    .array(z.strictObject({ name: z.string().min(1).max(128), description: z.string().max(4000).optional() }))
    .max(200)
    .default([]),
  /** The job's timeout when the request gives none. */
  timeout_s: jobTimeoutSeconds.optional(),
});

/** A recipe as the server serves it: its metadata, its payload schema compiled, and its project folder. */
export interface Recipe {
  name: string;
  folder: string;
  description: string;
  operations: Array<{ name: string; description?: string | undefined }>;
  timeoutS: number | undefined;
  payloadSchema: Record<string, unknown>;
  validate: ValidateFunction;
}

const ONE_TASK = 'a recipe job is one task with one payload; for several payloads, submit several jobs (POST /api/v1/jobs/batch)';
/** Fields of a project job that a recipe job does not take, and why (answered as a 422 naming the field). */
const NOT_FOR_RECIPES: Record<string, string> = {
  type: 'the recipe provides the job type',
  runner_command: 'the recipe runs its own entrypoint',
  reduce_command: 'the recipe runs its own entrypoint',
  project: 'the recipe runs on its own runtime, not on a project',
  fan_out: ONE_TASK,
  batch_size: ONE_TASK,
  batch_per_task: ONE_TASK,
  profile: 'the recipe decides where it runs',
  requirements: 'the recipe decides where it runs',
};

/**
 * Reads every recipe under `dir`: one sub-folder per recipe, named as the recipe, holding a
 * Computalot project (computalot.project.json, Dockerfile, code), `recipe.json` and
 * `payload.schema.json`. Anything wrong stops the start, naming the file and the field: an
 * operator who configured a recipe wants it served, not skipped behind a log line.
 */
export async function loadRecipes(dir: string): Promise<Recipe[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    throw recipeError(`--recipes ${dir}: cannot read the folder (${error.code ?? error.message})`, 'give a folder holding one sub-folder per recipe');
  });
  const { Ajv } = await import('ajv');
  const { Ajv2019 } = await import('ajv/dist/2019.js');
  const { Ajv2020 } = await import('ajv/dist/2020.js');
  // `format` is an annotation unless a vocabulary says otherwise (JSON Schema 2020-12, 7.2.1), and
  // operators' schemas may carry keywords of their own: neither stops a recipe from loading.
  const options = { allErrors: true, strict: false, validateFormats: false } as const;
  const validators = { 'draft-07': new Ajv(options), '2019-09': new Ajv2019(options), '2020-12': new Ajv2020(options) };
  const recipes: Recipe[] = [];
  for (const entry of entries.filter((e) => e.isDirectory()).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const folder = path.join(dir, entry.name);
    if (!PROJECT_NAME_PATTERN.test(entry.name))
      throw recipeError(
        `${folder}: "${entry.name}" is not a recipe name: expected lowercase letters, digits, ".", "_" or "-", at most 63, starting with a letter or digit`,
        'rename the folder: its name is the recipe name',
      );
    const metadata = recipeFileSchema.safeParse(await readJsonFile(path.join(folder, RECIPE_FILE)));
    if (!metadata.success) {
      const issue = metadata.error.issues[0]!;
      throw recipeError(
        `${path.join(folder, RECIPE_FILE)}: ${issue.path.join('.') || '(the file)'}: ${issue.message}`,
        'recipe.json is {"description": "...", "operations": [{"name": "...", "description": "..."}], "timeout_s": 300} (docs/api.md, "Recipes")',
      );
    }
    const schemaFile = path.join(folder, PAYLOAD_SCHEMA_FILE);
    const schemaObject = z.record(z.string(), z.unknown()).safeParse(await readJsonFile(schemaFile));
    if (!schemaObject.success)
      throw recipeError(`${schemaFile}: expected a JSON Schema object`, 'write the payload\'s JSON Schema there, e.g. {"type": "object", "required": [...]}');
    const payloadSchema = schemaObject.data;
    const draft = schemaDraft(payloadSchema, schemaFile);
    let validate: ValidateFunction;
    try {
      // Compiled under the draft's own spelling of `$schema` (ajv knows each by one).
      validate = validators[draft.name].compile(payloadSchema.$schema === undefined ? payloadSchema : { ...payloadSchema, $schema: draft.id });
    } catch (error) {
      throw recipeError(
        `${schemaFile}: not a valid JSON Schema (draft ${draft.name}): ${(error as Error).message}`,
        'fix the schema; `$schema` picks the draft',
      );
    }
    await checkRecipeProject(folder);
    recipes.push({
      name: entry.name,
      folder,
      description: metadata.data.description,
      operations: metadata.data.operations,
      timeoutS: metadata.data.timeout_s,
      payloadSchema,
      validate,
    });
  }
  return recipes;
}

/** The drafts a payload schema may be written in, each with the `$schema` ajv knows it by. */
const DRAFTS = [
  { name: 'draft-07', id: 'http://json-schema.org/draft-07/schema#' },
  { name: '2019-09', id: 'https://json-schema.org/draft/2019-09/schema' },
  { name: '2020-12', id: 'https://json-schema.org/draft/2020-12/schema' },
] as const;
type Draft = (typeof DRAFTS)[number];

/** Which draft a schema is written in, by its `$schema` (http or https, "#" or not; 2020-12 when it names none). */
function schemaDraft(schema: Record<string, unknown>, file: string): Draft {
  const declared = schema.$schema;
  const bare = (id: string): string => id.replace(/^https?:\/\//, '').replace(/#$/, '');
  const draft = declared === undefined ? DRAFTS[2] : DRAFTS.find((d) => typeof declared === 'string' && bare(d.id) === bare(declared));
  if (draft !== undefined) return draft;
  throw recipeError(
    `${file}: $schema: ${JSON.stringify(declared)} is not a draft this server reads`,
    'use "https://json-schema.org/draft/2020-12/schema", "https://json-schema.org/draft/2019-09/schema" or "http://json-schema.org/draft-07/schema#" (or leave $schema out: 2020-12)',
  );
}

/** The folder must be a valid Computalot project, as a push of it would be. */
async function checkRecipeProject(folder: string): Promise<void> {
  const formats = await projectFormatsAt(folder);
  if (!formats.includes('computalot') || formats.length > 1)
    throw recipeError(
      `${folder}: a recipe is a Computalot project: it needs ${COMPUTALOT_MANIFEST_PATH} at its top level${formats.includes('cycleswap') ? ' and no .cycleswap/' : ''}`,
      'see docs/computalot.md for the project format',
    );
  const check = await checkProjectAt(folder, 'computalot');
  if (!check.project) {
    const problems = check.diagnostics.filter((d) => d.severity === 'error').flatMap((d) => formatDiagnostic({ ...d, file: path.join(folder, d.file) }));
    throw new CycleError({ message: `${folder}: the recipe's project is invalid`, details: problems, exitCode: ExitCode.invalidProject });
  }
}

async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    throw recipeError(
      `${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
      'every recipe folder holds recipe.json and payload.schema.json',
    );
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw recipeError(`${file}: not JSON: ${(error as Error).message}`, 'fix the JSON');
  }
}

function recipeError(message: string, hint: string): CycleError {
  return new CycleError({ message, hint, exitCode: ExitCode.invalidProject });
}

export interface RecipeServiceOptions {
  recipes: Recipe[];
  projects: ProjectService;
  log: (line: string) => void;
}

/** Recipes: sealed runtimes, each an internal project whose jobs take a payload checked against a schema. */
export class RecipeService {
  private readonly byName: Map<string, Recipe>;

  constructor(private readonly options: RecipeServiceOptions) {
    this.byName = new Map(options.recipes.map((r) => [r.name, r]));
  }

  /**
   * Publishes each recipe's folder as the active revision of its internal project, packed as
   * `cycle project upload` packs (recipe.json and the schema left out: they are not the
   * runtime's). An unchanged folder keeps its revision and image.
   */
  async register(): Promise<void> {
    for (const recipe of this.options.recipes) {
      const selection = await selectFiles(recipe.folder, { extraExcludes: [`/${RECIPE_FILE}`, `/${PAYLOAD_SCHEMA_FILE}`] });
      const tarball = gzipDeterministic(tarStream(toTarEntries(selection.entries)));
      let pushed;
      try {
        pushed = await this.options.projects.push(recipeProject(recipe.name), tarball, { rebuild: false, clean: false });
      } catch (error) {
        if (error instanceof DomainError) throw recipeError(`${recipe.folder}: the recipe's project was refused: ${error.message}`, 'fix the project files');
        throw error;
      }
      this.options.log(`recipe ${recipe.name}: revision ${pushed.revision}${pushed.unchanged ? ' (unchanged)' : ''}`);
    }
  }

  /** `GET /api/v1/recipes`. */
  list(): Array<Record<string, unknown>> {
    return this.options.recipes.map((recipe) => this.summary(recipe));
  }

  /** `GET /api/v1/recipes/:name`: the summary, the payload schema, and how to submit. */
  detail(name: string): Record<string, unknown> {
    const recipe = this.require(name, 'name');
    return {
      ...this.summary(recipe),
      payload_schema: recipe.payloadSchema,
      // The docs call it the recipe's schema; clients may read either name.
      schema: recipe.payloadSchema,
      submit: { route: `POST /api/v1/recipes/${recipe.name}/jobs`, generic: `POST /api/v1/jobs with "recipe": "${recipe.name}"` },
    };
  }

  private summary(recipe: Recipe): Record<string, unknown> {
    return { name: recipe.name, description: recipe.description, operations: recipe.operations, timeout_s: recipe.timeoutS ?? null };
  }

  /** Whether a `POST /api/v1/jobs` body asks for a recipe's job (it names `recipe`). */
  static isRecipeJob(body: unknown): body is { recipe: unknown } {
    return body !== null && typeof body === 'object' && !Array.isArray(body) && 'recipe' in body;
  }

  /**
   * A recipe job's request as the project job it runs as: the recipe's project, its entrypoint
   * (no runner_command), its default timeout. `route` is the recipe the route names (route-
   * specific submit), absent for `POST /api/v1/jobs` where the body's `recipe` names it.
   */
  jobRequest(body: unknown, route?: string): JobRequest {
    if (body === null || typeof body !== 'object' || Array.isArray(body))
      throw malformed('invalid_request', 'send a JSON object: {"payload": {...}, "timeout_s": 300}');
    const named = 'recipe' in body ? body.recipe : undefined;
    if (route === undefined && (typeof named !== 'string' || named === ''))
      throw malformed('invalid_request', 'recipe: expected a recipe name (GET /api/v1/recipes lists them)', 'recipe');
    const recipe = this.require(route ?? String(named), route === undefined ? 'recipe' : 'name');
    if (route !== undefined && named !== undefined && named !== route)
      throw invalid('invalid_job', `recipe: ${JSON.stringify(named)} differs from the route's recipe "${route}": leave recipe out here`, 'recipe');
    for (const [field, why] of Object.entries(NOT_FOR_RECIPES)) {
      if (field in body)
        throw invalid(
          'invalid_job',
          `${field}: a recipe job does not take it, leave it out: ${why} (GET /api/v1/recipes/${recipe.name} shows what a ${recipe.name} job takes)`,
          field,
        );
    }
    const parsed = recipeJobRequestSchema.safeParse(body);
    if (!parsed.success) throw zodError(parsed.error);
    const { recipe: _named, ...fields } = parsed.data;
    this.checkPayload(recipe, fields.payload);
    return { ...fields, type: 'structured_runner', project: recipeProject(recipe.name), timeout_s: fields.timeout_s ?? recipe.timeoutS };
  }

  /** A payload that breaks the recipe's schema: 422 naming the first field at fault, with every problem in the message. */
  private checkPayload(recipe: Recipe, payload: Record<string, unknown>): void {
    if (recipe.validate(payload)) return;
    const problems = (recipe.validate.errors ?? []).filter((e) => e.keyword !== 'if').map(describeSchemaError);
    const first = problems[0] ?? { field: 'payload', message: 'does not match the schema' };
    const shown = problems.slice(0, 10).map((p) => `${p.field}: ${p.message}`);
    if (problems.length > shown.length) shown.push(`and ${problems.length - shown.length} more`);
    throw invalid(
      'invalid_payload',
      `the payload does not match recipe ${recipe.name}'s schema: ${shown.join('; ')}. GET /api/v1/recipes/${recipe.name} shows the schema (cycle recipe show ${recipe.name})`,
      first.field,
    );
  }

  private require(name: string, field: string): Recipe {
    const recipe = this.byName.get(name);
    if (!recipe) {
      const known = [...this.byName.keys()];
      throw new DomainError(
        'not-found',
        'recipe_not_found',
        `this server has no recipe "${name}" (GET /api/v1/recipes lists them; ${known.length ? `it has ${known.map((n) => `"${n}"`).join(', ')}` : 'it has none: the operator registers them with cycle server --recipes DIR'})`,
        field,
      );
    }
    return recipe;
  }
}

/** One schema violation as a field path under `payload` (`payload.candidates.0.3`) and what was expected. */
function describeSchemaError(error: ErrorObject): { field: string; message: string } {
  const segments = error.instancePath
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const at = (extra?: string): string => ['payload', ...segments, ...(extra === undefined ? [] : [extra])].join('.');
  const { params } = error;
  switch (error.keyword) {
    case 'required':
      return { field: at(String(params.missingProperty)), message: 'required, but missing' };
    case 'additionalProperties':
      return { field: at(String(params.additionalProperty)), message: 'not a field this recipe takes: leave it out' };
    case 'enum':
      return {
        field: at(),
        message: `expected one of ${[params.allowedValues]
          .flat()
          .map((v: unknown) => JSON.stringify(v))
          .join(', ')}`,
      };
    case 'const':
      return { field: at(), message: `expected ${JSON.stringify(params.allowedValue)}` };
    case 'type':
      return { field: at(), message: `expected ${String(params.type).replace(/,/g, ' or ')}` };
    default:
      return { field: at(), message: error.message ?? `breaks the schema's "${error.keyword}"` };
  }
}
