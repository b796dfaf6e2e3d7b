/*
 * The smarthost connection pool (src/smtp/delivery.ts SmarthostPool): messages share one connection, a
 * refused transaction leaves the connection usable, a cached connection the server has closed is replaced
 * without failing the message, the stored bytes arrive exactly as given, and an idle connection is closed
 * with QUIT after `smtp.relay.smarthost.idle_s` (default 2, as Postfix's smtp_connection_cache_time_limit).
 */
import net from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterEach, describe, expect, it } from 'vitest';
import { deliverSmarthost, SmarthostPool } from '../../src/smtp/delivery.js';
import { makeRuntime, message, waitFor, type QueueFixture } from './queue-fixture.js';

interface CountingSink {
  readonly port: number;
  readonly connections: net.Socket[];
  readonly messages: Buffer[];
  close(): Promise<void>;
}

async function countingSink(): Promise<CountingSink> {
  const connections: net.Socket[] = [];
  const messages: Buffer[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    disableReverseLookup: true,
    logger: false,
    onRcptTo(address, _session, cb) {
      if (address.address.startsWith('nobody@')) return cb(Object.assign(new Error('5.1.1 no such user'), { responseCode: 550 }));
      cb();
    },
    onData(stream, _session, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        messages.push(Buffer.concat(chunks));
        cb();
      });
    },
  });
  server.on('error', () => undefined);
  server.server.on('connection', (s: net.Socket) => connections.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.server.address() as net.AddressInfo).port;
  return {
    port,
    connections,
    messages,
    close: () =>
      new Promise<void>((r) => {
        server.options.closeTimeout = 50;
        server.close(() => r());
      }),
  };
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(idle_s?: number): Promise<{ sink: CountingSink; fx: QueueFixture; pool: SmarthostPool }> {
  const sink = await countingSink();
  cleanups.push(() => sink.close());
  const fx = await makeRuntime({ relay: { smarthost: { host: '127.0.0.1', port: sink.port, tls: 'none', ...(idle_s === undefined ? {} : { idle_s }) } } });
  cleanups.push(() => fx.cleanup());
  const pool = new SmarthostPool();
  cleanups.push(() => pool.close());
  return { sink, fx, pool };
}

describe('smarthost pool', () => {
  it('sends consecutive messages over one connection, bytes unchanged', async () => {
    const { sink, fx, pool } = await setup();
    for (let i = 0; i < 4; i++) {
      const data = message(`pooled ${i}`, '.leading dot\r\nline\r\n');
      const out = await deliverSmarthost({ config: fx.rt.config, sender: 'a@example.org', recipients: ['b@example.net'], data }, {}, pool);
      expect(out.map((o) => o.result)).toEqual(['delivered']);
      expect(sink.messages[i]!.equals(data)).toBe(true);
    }
    expect(sink.connections).toHaveLength(1);
  });

  it('keeps the connection after a refused recipient and reports per recipient', async () => {
    const { sink, fx, pool } = await setup();
    const out = await deliverSmarthost({ config: fx.rt.config, sender: 'a@example.org', recipients: ['nobody@example.net'], data: message('refused') }, {}, pool);
    expect(out[0]!.result).toBe('permanent');
    expect(out[0]!.detail).toContain('550');
    const mixed = await deliverSmarthost({ config: fx.rt.config, sender: 'a@example.org', recipients: ['nobody@example.net', 'b@example.net'], data: message('mixed') }, {}, pool);
    expect(mixed.map((o) => o.result)).toEqual(['permanent', 'delivered']);
    expect(sink.messages).toHaveLength(1);
    expect(sink.connections).toHaveLength(1);
  });

  it('replaces a cached connection the server has closed, without failing the message', async () => {
    const { sink, fx, pool } = await setup();
    const job = (s: string) => ({ config: fx.rt.config, sender: 'a@example.org', recipients: ['b@example.net'], data: message(s) });
    expect((await deliverSmarthost(job('first'), {}, pool))[0]!.result).toBe('delivered');
    sink.connections[0]!.destroy();
    await waitFor(() => sink.connections[0]!.destroyed);
    expect((await deliverSmarthost(job('second'), {}, pool))[0]!.result).toBe('delivered');
    expect(sink.messages).toHaveLength(2);
    expect(sink.connections).toHaveLength(2);
  });

  it('a connection that cannot be made is a temporary failure', async () => {
    const { fx, pool } = await setup();
    const dead = await new Promise<number>((resolve) => {
      const srv = net.createServer();
      srv.listen(0, '127.0.0.1', () => {
        const port = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(port));
      });
    });
    const config = { ...fx.rt.config, smtp: { ...fx.rt.config.smtp, relay: { smarthost: { ...fx.rt.config.smtp.relay.smarthost!, port: dead } } } };
    const out = await deliverSmarthost({ config, sender: 'a@example.org', recipients: ['b@example.net'], data: message('nowhere') }, { connectionTimeoutMs: 2000 }, pool);
    expect(out[0]!.result).toBe('temporary');
  });

  it('closes an idle connection after idle_s (default 2 s) with QUIT, and opens a new one for the next message', async () => {
    const { sink, fx, pool } = await setup();
    expect(fx.rt.config.smtp.relay.smarthost!.idle_s).toBe(2);
    const job = (s: string) => ({ config: fx.rt.config, sender: 'a@example.org', recipients: ['b@example.net'], data: message(s) });
    expect((await deliverSmarthost(job('one'), {}, pool))[0]!.result).toBe('delivered');
    const first = sink.connections[0]!;
    let quit = false;
    first.on('data', (d: Buffer) => (quit ||= /^QUIT\r\n/m.test(d.toString('latin1'))));
    const t0 = Date.now();
    await waitFor(() => first.destroyed || first.readableEnded, 15_000);
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(1500);
    expect(quit).toBe(true);
    expect(pool.size).toBe(0);
    expect((await deliverSmarthost(job('two'), {}, pool))[0]!.result).toBe('delivered');
    expect(sink.connections).toHaveLength(2);
  });

  it('idle_s 0 closes the connection after each transaction; reuse within idle_s keeps one', async () => {
    const zero = await setup(0);
    const job = (cfg: typeof zero.fx.rt.config, s: string) => ({ config: cfg, sender: 'a@example.org', recipients: ['b@example.net'], data: message(s) });
    for (const s of ['a', 'b']) expect((await deliverSmarthost(job(zero.fx.rt.config, s), {}, zero.pool))[0]!.result).toBe('delivered');
    expect(zero.sink.connections).toHaveLength(2);
    expect(zero.pool.size).toBe(0);
    const long = await setup(30);
    for (const s of ['a', 'b', 'c']) expect((await deliverSmarthost(job(long.fx.rt.config, s), {}, long.pool))[0]!.result).toBe('delivered');
    expect(long.sink.connections).toHaveLength(1);
    expect(long.pool.size).toBe(1);
  });
});
