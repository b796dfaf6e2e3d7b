/*
 * Idle connections and slowloris against a gatehouse child process. `openIdle` opens N sessions spread over
 * the three listeners and loopback source addresses and waits for each greeting; `runSlowloris` opens N
 * sockets that trickle one byte of a never-ending command line per interval while a well-behaved client
 * on 127.0.0.1 keeps running full sessions; it reports RSS samples, the client's latencies and refusals,
 * and how many trickling sockets the server closed.
 */
import net from 'node:net';
import { LineConn, makeSetup, probe, sleep, sourceAddresses, type Proc, type Proto, type Setup } from './proc.js';

const PROTOS: readonly Proto[] = ['smtp', 'ftp', 'nntp'];

/** Caps raised so 1,000 sockets fit: per service `total`, per address `perIp`. */
export function loadSetup(total: number, perIp: number): Promise<Setup> {
  const limits = { connections: total, connections_per_ip: perIp };
  return makeSetup({ smtp: { limits }, ftp: { limits }, nntp: { limits } });
}

export async function openIdle(setup: Setup, n: number, addresses: number): Promise<{ conns: LineConn[]; greeted: number; failed: number }> {
  const addrs = sourceAddresses(addresses);
  const conns: LineConn[] = [];
  let failed = 0;
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, n - i) }, async (_, k) => {
        const j = i + k;
        const c = await LineConn.connect(setup.ports[PROTOS[j % 3]!], addrs[j % addrs.length]).catch(() => null);
        if (!c) return null;
        const g = await c.reply(15_000);
        if (!g || !/^(220|200|201) /.test(g)) {
          c.close();
          return null;
        }
        return c;
      }),
    );
    for (const c of batch) if (c) conns.push(c);
    else failed++;
  }
  return { conns, greeted: conns.length, failed };
}

export interface SlowlorisFigures {
  readonly sockets: number;
  readonly connected: number;
  readonly closedByServer: number;
  readonly rssMb: { before: number; peak: number; after: number };
  readonly client: { sessions: number; refused: number; medianMs: number; maxMs: number; idleMedianMs: number };
}

const median = (a: number[]) => (a.length ? [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]! : NaN);

export async function runSlowloris(setup: Setup, proc: Proc, o: { sockets: number; addresses: number; seconds: number; intervalMs?: number }): Promise<SlowlorisFigures> {
  // the well-behaved client on an idle server first
  const idle: number[] = [];
  for (let i = 0; i < 3; i++) for (const p of PROTOS) idle.push((await probe(p, setup.ports[p])) ?? NaN);
  const before = proc.rssMb();
  const addrs = sourceAddresses(o.addresses);
  const socks: net.Socket[] = [];
  let closedByServer = 0;
  let connected = 0;
  await Promise.all(
    Array.from({ length: o.sockets }, (_, j) => {
      return new Promise<void>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port: setup.ports[PROTOS[j % 3]!], localAddress: addrs[j % addrs.length] });
        const t = setTimeout(resolve, 10_000);
        s.on('connect', () => {
          connected++;
          clearTimeout(t);
          resolve();
        });
        s.on('data', () => undefined);
        s.on('error', () => undefined);
        s.on('close', () => {
          closedByServer++;
          clearTimeout(t);
          resolve();
        });
        socks.push(s);
      });
    }),
  );
  const line = { smtp: 'EHLO ', ftp: 'USER ', nntp: 'GROUP ' };
  let tick = 0;
  const timer = setInterval(() => {
    for (let j = 0; j < socks.length; j++) {
      const s = socks[j]!;
      if (s.destroyed || !s.writable) continue;
      const head = line[PROTOS[j % 3]!];
      s.write(tick < head.length ? head[tick]! : 'a');
    }
    tick++;
  }, o.intervalMs ?? 1000);
  let peak = before;
  const lat: number[] = [];
  let refused = 0;
  const end = Date.now() + o.seconds * 1000;
  try {
    while (Date.now() < end) {
      for (const p of PROTOS) {
        const ms = await probe(p, setup.ports[p], '127.0.0.1', 10_000);
        if (ms === null) refused++;
        else lat.push(ms);
      }
      peak = Math.max(peak, proc.rssMb());
      await sleep(500);
    }
  } finally {
    clearInterval(timer);
  }
  const after = proc.rssMb();
  const closed = closedByServer;
  for (const s of socks) s.destroy();
  return {
    sockets: o.sockets,
    connected,
    closedByServer: closed,
    rssMb: { before: Math.round(before), peak: Math.round(peak), after: Math.round(after) },
    client: { sessions: lat.length, refused, medianMs: Math.round(median(lat) * 10) / 10, maxMs: Math.round(Math.max(...lat, 0)), idleMedianMs: Math.round(median(idle) * 10) / 10 },
  };
}

