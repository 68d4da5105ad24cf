import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { selectFiles } from '../../src/pack/select.js';
import { extractTarball } from '../../src/server/extract.js';
import { DEFAULT_TREE_LIMITS } from '../../src/server/limits.js';
import { tempDir } from '../helpers/context.js';
import { longestStallMs } from '../helpers/event-loop.js';
import { paxHeader, rawTarGz, type RawEntry } from '../helpers/tarballs.js';

/*
 * Issue 18, "how it is checked": random trees within the limits (depth up to the limit, files
 * and symlinks at any level) never stall the event loop over 100 ms, neither while a push is
 * extracted nor while the server selects a stored tree's files (what a revision's first task does).
 */

const STALL_BUDGET_MS = 100;
let base: string;
let run = 0;

beforeAll(async () => {
  base = await tempDir('cycle-sec-tree-stall-');
});
afterAll(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

interface TreeShape {
  depth: number;
  component: string;
  leaves: Array<{ level: number; kind: 'file' | 'link-here' | 'link-up' | 'link-file' }>;
}

function entriesOf(shape: TreeShape): RawEntry[] {
  const folders: string[] = [];
  let prefix = '';
  for (let level = 0; level < shape.depth; level++) {
    prefix += `${shape.component}/`;
    folders.push(prefix);
  }
  const entries: RawEntry[] = [{ name: 'top.txt', body: 'top' }, ...folders.map((name): RawEntry => ({ name, type: '5' }))];
  shape.leaves.forEach((leaf, index) => {
    const folder = folders[leaf.level % folders.length]!;
    const name = `${folder}${leaf.kind === 'file' ? 'f' : 'l'}${index}`;
    if (leaf.kind === 'file') entries.push({ name, body: `${index}\n` });
    else
      entries.push({
        name,
        type: '2',
        linkname: leaf.kind === 'link-here' ? '.' : leaf.kind === 'link-up' ? '..' : `${'../'.repeat((leaf.level % folders.length) + 1)}top.txt`,
      });
  });
  return entries.flatMap((entry) => (Buffer.byteLength(entry.name) > 99 ? [paxHeader({ path: entry.name }), { ...entry, name: 'x' }] : [entry]));
}

const maxComponent = Math.floor(DEFAULT_TREE_LIMITS.maxPathBytes / DEFAULT_TREE_LIMITS.maxDepth) - 2;
const shape: fc.Arbitrary<TreeShape> = fc.record({
  depth: fc.integer({ min: 1, max: DEFAULT_TREE_LIMITS.maxDepth - 1 }),
  component: fc.stringMatching(new RegExp(`^[a-z]{1,${maxComponent}}$`)),
  leaves: fc.array(fc.record({ level: fc.nat(), kind: fc.constantFrom('file' as const, 'link-here' as const, 'link-up' as const, 'link-file' as const) }), {
    maxLength: 400,
  }),
});

it('random trees within the limits never stall the event loop over 100 ms (extraction, then the server walk)', async () => {
  await fc.assert(
    fc.asyncProperty(shape, async (tree) => {
      const dest = path.join(base, `tree-${run++}`);
      try {
        const gz = rawTarGz(entriesOf(tree));
        const extracted = await longestStallMs(() => extractTarball(Readable.from([gz]), dest, { maxBytes: 1 << 30, maxFiles: 100_000 }));
        expect(extracted.stallMs, 'extraction held the event loop').toBeLessThan(STALL_BUDGET_MS);
        const walked = await longestStallMs(() => selectFiles(dest, { rules: false, limits: DEFAULT_TREE_LIMITS }));
        expect(walked.stallMs, 'the walk held the event loop').toBeLessThan(STALL_BUDGET_MS);
        expect(walked.value.entries.filter((e) => e.type === 'symlink')).toHaveLength(tree.leaves.filter((l) => l.kind !== 'file').length);
      } finally {
        await fs.rm(dest, { recursive: true, force: true });
      }
    }),
    {
      numRuns: 12,
      endOnFailure: true, // a failing tree is reported as found: shrinking would rerun seconds-long walks
      examples: [
        // The walk's worst case within the limits: many links at the bottom of the deepest tree.
        [
          {
            depth: DEFAULT_TREE_LIMITS.maxDepth - 1,
            component: 'd',
            leaves: Array.from({ length: 400 }, (_, i) => ({
              level: DEFAULT_TREE_LIMITS.maxDepth - 2,
              kind: (i % 2 ? 'link-up' : 'link-here') as 'link-up' | 'link-here',
            })),
          },
        ],
      ],
    },
  );
}, 180_000);
