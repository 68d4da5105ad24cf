import fs from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { tempDir } from '../helpers/context.js';

// The tests' temp folders (test/helpers/temp.ts). These tests run in order: each looks at what
// the one before it left.
let madeInBeforeAll = '';
let madeInTest = '';
beforeAll(async () => {
  madeInBeforeAll = await tempDir('cycle-before-all-');
});

describe('tempDir', () => {
  it("makes a new empty folder under the run's root", async () => {
    madeInTest = await tempDir('cycle-in-test-');
    expect(await fs.readdir(madeInTest)).toEqual([]);
    expect(path.basename(madeInTest)).toMatch(/^cycle-in-test-/);
    expect(path.dirname(madeInTest)).toBe(inject('tempRoot'));
    await fs.writeFile(path.join(madeInTest, 'left-behind.txt'), 'x');
  });

  it('removes that folder, with what is in it, once its test has ended', async () => {
    expect(madeInTest).not.toBe('');
    await expect(fs.access(madeInTest)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('keeps a folder made in beforeAll for every test of the file', async () => {
    expect((await fs.stat(madeInBeforeAll)).isDirectory()).toBe(true);
  });
});
