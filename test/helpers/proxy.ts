import http from 'node:http';

export type Fault = 'drop-mid-upload' | '503' | '429' | 'stall' | 'drop-response';

/**
 * A proxy on 127.0.0.1 in front of a server that misbehaves on purpose: the first requests
 * matching `path` get `faults[i]`, later ones pass through. Records what it saw.
 */
export async function faultProxy(
  target: string,
  faults: Fault[],
  path: RegExp,
): Promise<{ url: string; seen: Array<{ method: string; url: string; fault: Fault | null }>; close(): Promise<void> }> {
  const seen: Array<{ method: string; url: string; fault: Fault | null }> = [];
  const queue = [...faults];
  const sockets = new Set<import('node:net').Socket>();
  const server = http.createServer((req, res) => {
    const fault = path.test(req.url ?? '') ? (queue.shift() ?? null) : null;
    seen.push({ method: req.method ?? '', url: req.url ?? '', fault });
    if (fault === 'drop-mid-upload') {
      let bytes = 0;
      req.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes > 0) req.socket.destroy();
      });
      return;
    }
    if (fault === '503' || fault === '429') {
      req.resume();
      req.on('end', () => {
        res.writeHead(fault === '503' ? 503 : 429, { 'content-type': 'application/json', ...(fault === '429' ? { 'retry-after': '1' } : {}) });
        res.end(JSON.stringify({ error: { code: 'busy', message: 'try later' } }));
      });
      return;
    }
    if (fault === 'stall') {
      req.resume(); // take the body, never answer
      return;
    }
    const upstream = http.request(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers }, (answer) => {
      if (fault === 'drop-response') {
        answer.resume();
        answer.on('end', () => req.socket.destroy());
        return;
      }
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
