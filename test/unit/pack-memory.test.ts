import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { tempDir } from '../helpers/context.js';

// The collections packing asks for are counted, not run (util/gc.ts's own are real elsewhere).
const collections = vi.hoisted(() => ({ count: 0 }));
vi.mock('../../src/util/gc.js', () => ({
  collectGarbage: () => {
    collections.count++;
  },
  limitYoungGeneration: () => undefined,
}));

const { packProject } = await import('../../src/pack/pack.js');

describe('packing keeps its garbage bounded', () => {
  it('asks for a collection every 8 MB of output (each deflated segment leaves a 1 MiB buffer for the collector)', async () => {
    const root = await tempDir();
    // 20 MiB that do not compress: ~20 MiB of output, two collections at least.
    for (let i = 0; i < 20; i++) await fs.writeFile(path.join(root, `random-${i}.bin`), randomBytes(1 << 20));
    const out = path.join(await tempDir(), 'out.tar.gz');
    collections.count = 0;
    const packed = await packProject(root, { out });
    expect(packed.size).toBeGreaterThan(20 << 20);
    expect(collections.count).toBeGreaterThanOrEqual(2);
    expect(collections.count).toBeLessThanOrEqual(3);
  });
});
