import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { run as validate } from '../../src/commands/project/validate.js';
import { fakeContext, tempDir } from '../helpers/context.js';

const corpus = path.join(import.meta.dirname, '..', 'fixtures', 'bad-manifests');

interface Expected {
  file: string;
  line: number;
  column?: number;
  field: string;
  message: string;
  hint?: string;
}

const cases = (await fs.readdir(corpus)).sort();

describe('bad manifest corpus', () => {
  it('has at least 25 cases of both formats', () => {
    expect(cases.length).toBeGreaterThanOrEqual(25);
  });

  it.each(cases)('%s: exit 3 with the exact field, line and fix', async (name) => {
    const root = await tempDir();
    await fs.cp(path.join(corpus, name), root, { recursive: true, verbatimSymlinks: true });
    const expected = (JSON.parse(await fs.readFile(path.join(root, 'expect.json'), 'utf8')) as { diagnostics: Expected[] }).diagnostics;
    await fs.rm(path.join(root, 'expect.json'));

    const json = fakeContext({ cwd: root });
    expect(await validate({ json: true }, json.ctx)).toBe(3);
    const report = JSON.parse(json.stdout.text) as { valid: boolean; diagnostics: Array<Expected & { severity: string }> };
    expect(report.valid).toBe(false);
    for (const want of expected) {
      const hit = report.diagnostics.find(
        (d) =>
          d.file === want.file &&
          d.line === want.line &&
          d.field === want.field &&
          d.message.includes(want.message) &&
          (want.column === undefined || d.column === want.column),
      );
      expect(hit, `${want.file}:${want.line} ${want.field}: ${want.message}\n got: ${JSON.stringify(report.diagnostics, null, 1)}`).toBeDefined();
      if (want.hint) expect(hit?.hint ?? '').toContain(want.hint);
    }

    const text = fakeContext({ cwd: root });
    expect(await validate({ json: false }, text.ctx)).toBe(3);
    for (const want of expected) {
      const prefix = `${want.file}:${want.line}:`;
      const line = text.stdout.text.split('\n').find((l) => l.startsWith(prefix) && l.includes(want.message));
      expect(line, `no line starting ${prefix} in\n${text.stdout.text}`).toBeDefined();
      if (want.field) expect(line).toContain(`${want.field}: `);
    }
  });
});

const examples = path.join(import.meta.dirname, '..', 'fixtures', 'manifests');
const exampleCases = (await fs.readdir(examples)).sort();

describe('documented example manifests (platform-facts.md)', () => {
  it('has the minimal example, one per documented section and one with all of them', () => {
    expect(exampleCases).toEqual(
      expect.arrayContaining([
        'docs-minimal',
        'docs-build',
        'docs-validation',
        'docs-runtime-init',
        'docs-runtime-services',
        'docs-all-sections',
        'docs-cycleswap',
      ]),
    );
  });

  it.each(exampleCases)('%s: valid, with no error and no warning', async (name) => {
    const root = await tempDir();
    await fs.cp(path.join(examples, name), root, { recursive: true });
    const json = fakeContext({ cwd: root });
    const code = await validate({ json: true }, json.ctx);
    const report = JSON.parse(json.stdout.text) as { valid: boolean; diagnostics: unknown[] };
    expect(report.diagnostics).toEqual([]);
    expect(code).toBe(0);
    expect(report.valid).toBe(true);
  });
});
