import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';

/** `job_…`, `task_…`, `art_…`: a time prefix (so ids sort by creation) and random bits. */
export function newId(prefix: 'job' | 'task' | 'art' | 'fb' | 'hold' | 'quote' | 'lease' | 'mtok'): string {
  const time = Date.now().toString(32).padStart(9, '0');
  const random = [...randomBytes(8)].map((b) => ALPHABET[b % 32]).join('');
  return `${prefix}_${time}${random}`;
}
