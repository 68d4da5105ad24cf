import { describe, expect, it } from 'vitest';
import { isInside } from '../../src/util/paths.js';
import { readAll } from '../../src/ui/streams.js';
import { PassThrough } from 'node:stream';

describe('isInside', () => {
  it.each([
    ['/p', '/p/a.txt', true],
    ['/p', '/p/..data/x', true],
    ['/p', '/p/a/../b', true],
    ['/p', '/p/../q', false],
    ['/p', '/q', false],
    ['/p', '/pq/a', false],
    ['/p', '/p', true],
  ])('%s contains %s: %s', (root, candidate, expected) => {
    expect(isInside(root, candidate)).toBe(expected);
  });

  it('the root itself can be excluded', () => {
    expect(isInside('/p', '/p', false)).toBe(false);
  });
});

describe('readAll', () => {
  it('reads a whole stream, multi-byte characters split across chunks included', async () => {
    const stream = new PassThrough();
    const bytes = Buffer.from('héllo wörld');
    stream.write(bytes.subarray(0, 2));
    stream.end(bytes.subarray(2));
    expect(await readAll(stream)).toBe('héllo wörld');
  });
});
