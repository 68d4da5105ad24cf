import fs from 'node:fs/promises';
import { readAll } from '../../ui/streams.js';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Context } from '../../context.js';
import { CycleError, ExitCode, usageError } from '../../errors.js';
import { unexpectedAnswer } from '../../api/client.js';
import { batchEntryAccepted, batchJobIdOf, errorTextOf, jobRequestSchema, MAX_BATCH_JOBS, type BatchEntryView } from '../../api/schemas.js';
import { formatTable } from '../../ui/ui.js';
import type { BatchOptions } from './batch.command.js';

interface Entry {
  line: number;
  job: Record<string, unknown>;
}

/**
 * `cycle job batch FILE.jsonl`: one job per line, every line checked before anything is sent,
 * then sent 200 at a time; an outcome per line.
 */
export async function run(options: BatchOptions, ctx: Context): Promise<number> {
  const text = await readInput(options.file, ctx);
  const entries: Entry[] = [];
  const problems: string[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = index + 1;
    if (raw.trim() === '' || raw.trim().startsWith('#')) return;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (error) {
      problems.push(`line ${line}: not valid JSON (${(error as Error).message.replace(/ in JSON at position \d+.*$/, '')})`);
      return;
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      problems.push(`line ${line}: expected a job object`);
      return;
    }
    const job = {
      ...(options.project || ctx.env.CYCLE_PROJECT ? { project: options.project ?? ctx.env.CYCLE_PROJECT } : {}),
      ...(value as Record<string, unknown>),
    };
    const checked = jobRequestSchema.safeParse(job);
    if (!checked.success) {
      const issue = checked.error.issues[0]!;
      problems.push(`line ${line}: ${issue.path.join('.') || '(job)'}: ${issue.message}`);
      return;
    }
    entries.push({ line, job });
  });
  if (problems.length > 0) {
    throw new CycleError({
      message: `${options.file}: ${problems.length} bad line${problems.length === 1 ? '' : 's'}; nothing was sent`,
      details: problems.slice(0, 20),
      hint: 'fix the lines and run again',
      exitCode: ExitCode.usage,
    });
  }
  if (entries.length === 0) throw usageError(`${options.file}: no jobs in it`);
  const api = await ctx.api(options);
  // `answer`: the server's entry as it came (--json), unknown fields included.
  const outcomes: Array<{ line: number; ok: boolean; id: string | null; error: string | null; answer: BatchEntryView }> = [];
  for (let start = 0; start < entries.length; start += MAX_BATCH_JOBS) {
    const chunk = entries.slice(start, start + MAX_BATCH_JOBS);
    const answer = await api.submitBatch(
      chunk.map((e) => e.job),
      randomUUID(),
    );
    for (const [position, entry] of answer.entries()) {
      // Which job of the request: `index`, else its place in the answer.
      const sent = chunk[entry.index ?? position];
      if (!sent)
        throw unexpectedAnswer(
          'POST /api/v1/jobs/batch',
          `has \`jobs.${position}.index\` = ${entry.index ?? position} (expected the index of one of the ${chunk.length} jobs sent, 0 to ${chunk.length - 1})`,
        );
      const accepted = batchEntryAccepted(entry);
      outcomes.push({
        line: sent.line,
        ok: accepted,
        id: accepted ? (batchJobIdOf(entry) ?? null) : null,
        error: accepted ? null : (errorTextOf(entry.error) ?? 'refused (the server gave no reason)'),
        answer: entry,
      });
    }
    ctx.ui.info(`sent ${Math.min(start + MAX_BATCH_JOBS, entries.length)} of ${entries.length}`);
  }
  const failed = outcomes.filter((o) => !o.ok).length;
  if (options.json) ctx.ui.json({ submitted: outcomes.length - failed, failed, jobs: outcomes });
  else if (ctx.io.stdout.isTTY)
    ctx.ui.out(
      formatTable(
        ['LINE', 'JOB', 'ERROR'],
        outcomes.map((o) => [String(o.line), o.id ?? '-', o.error ?? '']),
      ),
    );
  else for (const o of outcomes) ctx.ui.out(o.ok ? `${o.line}\t${o.id}` : `${o.line}\terror\t${o.error}`);
  if (failed) ctx.ui.warn(`${failed} of ${outcomes.length} jobs were refused`);
  return failed ? ExitCode.failure : ExitCode.ok;
}

async function readInput(file: string, ctx: Context): Promise<string> {
  if (file === '-') {
    return readAll(ctx.io.stdin);
  }
  try {
    return await fs.readFile(path.resolve(ctx.cwd, file), 'utf8');
  } catch {
    throw usageError(`${file}: no such file`, 'pass a .jsonl file with one job per line, or - for stdin');
  }
}
