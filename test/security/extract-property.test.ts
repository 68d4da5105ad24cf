import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { extractTarball, UnsafeTarball } from '../../src/server/extract.js';
import { isInside } from '../../src/util/paths.js';
import { tempDir } from '../helpers/context.js';
import { settlesWithin, snapshotTree } from '../helpers/sandbox.js';
import { rawTarGz, type RawEntry } from '../helpers/tarballs.js';

/*
 * Issue 11, case 1, as a property: whatever mix of files, folders, symlinks and hard links
 * (with "." and ".." chains, repeated names, trailing slashes), extraction into <base>/tree-N
 * never creates or changes anything outside it, refuses only with UnsafeTarball (removing the
 * tree), and every link it keeps resolves inside the tree.
 */

let base: string;
let outsideBefore: Record<string, string>;
let run = 0;

beforeAll(async () => {
  base = await tempDir('cycle-sec-extract-prop-');
  await fs.mkdir(path.join(base, 'outside'));
  await fs.writeFile(path.join(base, 'outside', 'victim.txt'), 'original\n');
  outsideBefore = await snapshotTree(base);
});
afterAll(async () => {
  await fs.rm(base, { recursive: true, force: true });
});

const component = fc.constantFrom('a', 'b', 'l', 'm');
const name = fc
  .tuple(fc.array(component, { minLength: 1, maxLength: 3 }), fc.constantFrom('', './', './/'), fc.constantFrom('', '/'))
  .map(([parts, prefix, suffix]) => `${prefix}${parts.join('/')}${suffix}`);
const linkTarget = fc
  .array(fc.constantFrom('.', '..', '..', 'a', 'b', 'l', 'm', 'outside', 'victim.txt', 'tree-0'), { minLength: 1, maxLength: 7 })
  .map((parts) => parts.join('/'));

const entry: fc.Arbitrary<RawEntry> = fc.oneof(
  fc.record({ name, body: fc.constantFrom('x', 'pwned\n', '') }),
  name.map((n): RawEntry => ({ name: n.endsWith('/') ? n : `${n}/`, type: '5' })),
  fc.record({ name, linkname: linkTarget }).map((e): RawEntry => ({ ...e, type: '2' })),
  fc.record({ name, linkname: fc.oneof(name, linkTarget) }).map((e): RawEntry => ({ ...e, type: '1' })),
);

/** Every symlink under `root` that resolves now resolves inside it. */
async function expectLinksInside(root: string): Promise<void> {
  const realRoot = await fs.realpath(root);
  const walk = async (dir: string): Promise<void> => {
    for (const child of await fs.readdir(dir, { withFileTypes: true })) {
      const absolute = path.join(dir, child.name);
      if (child.isSymbolicLink()) {
        const real = await fs.realpath(absolute).catch(() => undefined);
        if (real !== undefined)
          expect(isInside(realRoot, real), `${path.relative(root, absolute)} -> ${await fs.readlink(absolute)} resolves to ${real}`).toBe(true);
      } else if (child.isDirectory()) await walk(absolute);
    }
  };
  await walk(root);
}

it('never creates or changes anything outside the tree', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(entry, { minLength: 1, maxLength: 12 }), async (entries) => {
      const tree = path.join(base, `tree-${run++}`);
      try {
        const outcome = await settlesWithin(
          10_000,
          'extractTarball',
          extractTarball(Readable.from([rawTarGz(entries)]), tree, { maxBytes: 1 << 20, maxFiles: 100 }),
        ).then(
          () => undefined,
          (error: unknown) => error,
        );
        if (outcome === undefined) await expectLinksInside(tree);
        else {
          expect(outcome).toBeInstanceOf(UnsafeTarball);
          await expect(fs.access(tree)).rejects.toThrow();
        }
        const others = (await fs.readdir(base)).filter((n) => n.startsWith('tree-'));
        expect(await snapshotTree(base, new Set(others))).toEqual(outsideBefore);
      } finally {
        await fs.rm(tree, { recursive: true, force: true });
      }
    }),
    {
      numRuns: 150,
      examples: [
        [
          [
            { name: 'l', type: '2', linkname: '.' },
            { name: 'f', type: '2', linkname: 'l/l/../outside/victim.txt' },
            { name: 'f', body: 'pwned\n' },
          ],
        ],
        [
          [
            { name: 'a', type: '2', linkname: 'm/../outside/victim.txt' },
            { name: 'm', type: '2', linkname: '.' },
            { name: 'a', body: 'pwned\n' },
          ],
        ],
      ],
    },
  );
}, 120_000);
