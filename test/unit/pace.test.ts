import { describe, expect, it } from 'vitest';
import net from 'node:net';
import { pacer, yieldToIo } from '../../src/util/pace.js';

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

describe('yieldToIo', () => {
  /**
   * From inside an I/O callback (socket A's data), socket B's data is made to wait in the
   * kernel, then `pause` runs: whether B's data was read before `pause` resolved.
   */
  async function otherIoRunsDuring(pause: () => Promise<unknown>): Promise<boolean> {
    const server = net.createServer();
    const received: string[] = [];
    let outcome: Promise<boolean> | undefined;
    const clients: net.Socket[] = [];
    server.on('connection', (socket) => {
      socket.on('data', (data) => {
        const text = data.toString();
        received.push(text);
        if (text !== 'A') return;
        // B's bytes are written now and are in the kernel before the loop polls again.
        clients[1]!.write('B');
        const start = Date.now();
        while (Date.now() - start < 30) {
          // busy: B's data arrives meanwhile (loopback), unread until the loop polls
        }
        outcome = pause().then(() => received.includes('B'));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    let accepted = 0;
    const bothAccepted = new Promise<void>((resolve) => server.on('connection', () => ++accepted === 2 && resolve()));
    for (let i = 0; i < 2; i++)
      clients.push(
        await new Promise<net.Socket>((resolve) => {
          const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
        }),
      );
    await bothAccepted;
    clients[0]!.write('A');
    while (!outcome) await new Promise((resolve) => setTimeout(resolve, 5));
    const result = await outcome;
    for (const client of clients) client.destroy();
    await new Promise((resolve) => server.close(resolve));
    return result;
  }

  it('lets I/O that waits in, even when asked for from an I/O callback (one setImmediate does not)', async () => {
    expect(await otherIoRunsDuring(() => new Promise((resolve) => setImmediate(resolve)))).toBe(false);
    expect(await otherIoRunsDuring(yieldToIo)).toBe(true);
  });

  it("a pacer's yield is such a turn", async () => {
    expect(await otherIoRunsDuring(() => pacer(0)()!)).toBe(true);
  });
});
