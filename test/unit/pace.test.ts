import { describe, expect, it } from 'vitest';
import { pacer } from '../../src/util/pace.js';

describe('pacer', () => {
  it('reads the clock every `stepsPerClockRead` steps, and then yields once the slice has passed', async () => {
    // A slice of 0 ms has always passed: each clock read yields.
    const every4 = pacer(0, 4);
    const answers = Array.from({ length: 8 }, () => every4());
    expect(answers.map((answer) => answer !== undefined)).toEqual([false, false, false, true, false, false, false, true]);
    await Promise.all(answers);
    const everyStep = pacer(0);
    const first = everyStep();
    expect(first).toBeInstanceOf(Promise);
    await first;
  });

  it('does not yield before the slice has passed', () => {
    const pace = pacer(60_000, 2);
    expect(Array.from({ length: 10 }, () => pace())).toEqual(Array.from({ length: 10 }, () => undefined));
  });
});
