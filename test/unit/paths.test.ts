import { describe, expect, it } from 'vitest';
import { isInside, joinInside } from '../../src/util/paths.js';
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

describe('joinInside', () => {
  it('joins names and ids that stay inside', () => {
    expect(joinInside('/data/work', 'task_1')).toBe('/data/work/task_1');
    expect(joinInside('/data/work', 'a', '..data')).toBe('/data/work/a/..data');
  });

  it.each([['..'], ['../x'], ['a/../../x'], ['/etc/passwd/../..'], [''], ['a\0b']])('refuses %j without naming the host folder', (part) => {
    expect(() => joinInside('/data/work', part)).toThrow(/leads outside its folder/);
    expect(() => joinInside('/data/work', part)).not.toThrow(/\/data/);
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
