import http from 'node:http';
import { onTestFinished } from 'vitest';

/** Starts `server` on 127.0.0.1 on a free port; its base URL. */
export async function listenLocal(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

/**
 * A server on 127.0.0.1 answering with `handler` (a hostile or broken one, as a test writes it),
 * closed with its connections cut when the current test finishes; its base URL.
 */
export async function serveForTest(handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  onTestFinished(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return listenLocal(server);
}
