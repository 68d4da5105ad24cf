import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * docs/design.md, "One owner per table": each table of the server's database is written (INSERT,
 * UPDATE, DELETE) by one module only. A write elsewhere goes through a method of the owner.
 */
const OWNERS: Record<string, string> = {
  projects: 'projects.ts',
  revisions: 'projects.ts',
  builds: 'projects.ts',
  kv: 'projects.ts',
  jobs: 'state.ts',
  job_tags: 'state.ts',
  tasks: 'state.ts',
  artifacts: 'state.ts',
  events: 'events.ts',
  volumes: 'volumes.ts',
  feedback: 'feedback.ts',
  uploads: 'uploads.ts',
  holds: 'account.ts',
  ledger: 'account.ts',
  quotes: 'account.ts',
  idempotency: 'jobs.ts',
  machine_tokens: 'machines/registry.ts',
  machines: 'machines/registry.ts',
  web_sessions: 'web/sessions.ts',
};

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(full) : entry.name.endsWith('.ts') ? [full] : [];
  });
}

describe('one owner per table', () => {
  it('every table is written by its owner module only', () => {
    const src = path.resolve(import.meta.dirname, '../../src');
    const writers = new Map<string, Set<string>>();
    for (const file of sourceFiles(src)) {
      const text = fs.readFileSync(file, 'utf8');
      for (const match of text.matchAll(/\b(?:INSERT(?: OR \w+)? INTO|UPDATE|DELETE FROM)\s+([a-z_]+)\b/g)) {
        const table = match[1]!;
        if (!(table in OWNERS)) continue; // an SQL word in prose, or a table the list must learn (below)
        const set = writers.get(table) ?? new Set<string>();
        set.add(path.relative(path.join(src, 'server'), file));
        writers.set(table, set);
      }
    }
    // The CREATE TABLEs name every table: the list knows them all.
    const schema = fs.readFileSync(path.join(src, 'server', 'db.ts'), 'utf8');
    const tables = [...schema.matchAll(/CREATE TABLE IF NOT EXISTS (\w+)/g)].map((m) => m[1]!);
    expect(tables.sort()).toEqual(Object.keys(OWNERS).sort());
    for (const [table, files] of writers) expect([table, [...files]]).toEqual([table, [OWNERS[table]]]);
  });
});
