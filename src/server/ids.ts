import { randomFillSync } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const RANDOM_CHARS = 8;
/**
 * Random bytes drawn 4 KiB at a time: a 100,000-task fan-out makes 100,000 ids, and a
 * `randomBytes(8)` per id (a call into the CSPRNG and a Buffer each) was a third of its insert.
 */
const pool = Buffer.alloc(4096);
let used = pool.length;

/** `job_…`, `task_…`, `art_…`: a time prefix (so ids sort by creation) and random bits. */
export function newId(prefix: 'job' | 'task' | 'art' | 'fb' | 'hold' | 'quote' | 'lease' | 'mtok'): string {
  const time = Date.now().toString(32).padStart(9, '0');
  if (used + RANDOM_CHARS > pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  let random = '';
  for (let i = 0; i < RANDOM_CHARS; i++) random += ALPHABET[pool[used + i]! % 32];
  used += RANDOM_CHARS;
  return `${prefix}_${time}${random}`;
}
