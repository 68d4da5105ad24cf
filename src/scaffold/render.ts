import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export type TemplateFormat = 'cycleswap' | 'computalot';
export type TemplateName = 'python' | 'shell';

export interface TemplateFile {
  from: string;
  /** Path relative to the project root. */
  to: string;
  /** `project`: the project's configuration (replaced with --force); `source`: starter code, never overwritten. */
  kind: 'project' | 'source';
  mode?: string;
}

export interface RenderedFile {
  to: string;
  kind: 'project' | 'source';
  mode: number;
  content: string;
}

export function templatesRoot(): string {
  return fileURLToPath(new URL('../../templates/', import.meta.url));
}

/** The files of a template with `{{name}}` filled in. */
export async function renderTemplate(
  format: TemplateFormat,
  template: TemplateName,
  variables: Record<string, string>,
): Promise<{ description: string; files: RenderedFile[] }> {
  const dir = path.join(templatesRoot(), format, template);
  const spec = JSON.parse(await fs.readFile(path.join(dir, 'template.json'), 'utf8')) as { description: string; files: TemplateFile[] };
  const files = await Promise.all(
    spec.files.map(async (file) => {
      const raw = await fs.readFile(path.join(dir, file.from), 'utf8');
      const content = raw.replace(/\{\{(\w+)\}\}/g, (match, key: string) => variables[key] ?? match);
      return { to: file.to, kind: file.kind, mode: file.mode ? parseInt(file.mode, 8) : 0o644, content };
    }),
  );
  return { description: spec.description, files };
}
