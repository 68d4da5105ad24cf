import { expect, it } from 'vitest';
import { parseByteSize } from '../../src/util/size.js';

it('reads sizes as people write them (powers of 1024), and nothing else', () => {
  expect(parseByteSize('1048576')).toBe(1048576);
  expect(parseByteSize('512m')).toBe(512 * 1024 ** 2);
  expect(parseByteSize('1.5GiB')).toBe(1.5 * 1024 ** 3);
  expect(parseByteSize(' 20g ')).toBe(20 * 1024 ** 3);
  expect(parseByteSize('1t')).toBe(1024 ** 4);
  for (const bad of ['', 'g', '-1g', '1x', '1 gigabyte', '1e9']) expect(parseByteSize(bad), bad).toBeUndefined();
});
