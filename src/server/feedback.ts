import { z } from 'zod';
import type { Clock } from '../context.js';
import { timestamp, type DB } from './db.js';
import { newId } from './ids.js';

export const FEEDBACK_TYPES = ['bug', 'feature_request', 'provisioning', 'job_type_request'] as const;

export const feedbackRequestSchema = z.object({
  type: z.enum(FEEDBACK_TYPES),
  title: z.string().min(1).max(200),
  description: z.string().min(1).max(20_000),
});

/** `POST /api/v1/feedback`: kept in the database, where the operator reads it (`SELECT * FROM feedback`). */
export function storeFeedback(
  db: DB,
  clock: Clock | undefined,
  request: z.infer<typeof feedbackRequestSchema>,
): { id: string; type: string; title: string; created_at: string } {
  const id = newId('fb');
  const at = timestamp(clock);
  db.prepare('INSERT INTO feedback (id, type, title, description, created_at) VALUES (?, ?, ?, ?, ?)').run(
    id,
    request.type,
    request.title,
    request.description,
    at,
  );
  return { id, type: request.type, title: request.title, created_at: at };
}
