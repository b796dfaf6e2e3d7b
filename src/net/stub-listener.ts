/*
 * A listener that accepts, answers with the protocol's "service not available" and closes. Used for a
 * protocol whose adapter is not built yet, so `gatehouse start` can run every service it is told to.
 */
import net from 'node:net';
import { parseListen } from '../config/load.js';
import type { BoundAddress, Listener, Runtime } from '../runtime.js';
import type { Service } from '../policy/index.js';

const REFUSAL: Record<Service, string> = {
  smtp: '554 5.3.2 Service not available yet\r\n',
  ftp: '421 Service not available yet\r\n',
  nntp: '502 Service not available yet\r\n',
};

export function stubListener(service: Service, listen: string, _rt: Runtime): Listener {
  const server = net.createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.end(REFUSAL[service]);
  });
  return {
    service,
    activeSessions: () => 0,
    async start(): Promise<BoundAddress[]> {
      const { host, port } = parseListen(listen);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => resolve());
      });
      const addr = server.address() as net.AddressInfo;
      return [{ name: 'plain', host, port: addr.port }];
    },
    reload() {},
    async stop() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
