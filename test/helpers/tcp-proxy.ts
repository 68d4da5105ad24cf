import net from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 in front of a server: a machine's network link, as a test sees it.
 * `cut()` stands in for a network cut: open connections are destroyed and new ones refused at
 * once (a daemon behind it can no longer renew its leases); `restore()` lets traffic through
 * again on the same port.
 */
export async function tcpProxy(targetPort: number): Promise<{
  url: string;
  port: number;
  cut(): void;
  restore(): void;
  /** Sends new connections to another port (a server restarted on a new one). */
  retarget(port: number): void;
  close(): Promise<void>;
}> {
  const sockets = new Set<net.Socket>();
  let open = true;
  let target = targetPort;
  const track = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const server = net.createServer((client) => {
    track(client);
    if (!open) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target, '127.0.0.1');
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    cut() {
      open = false;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      open = true;
    },
    retarget(port: number) {
      target = port;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
