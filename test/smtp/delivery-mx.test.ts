import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliverDirect, isLocalAddress, mxHosts, type MxResolver } from '../../src/smtp/delivery.js';
import { createMailQueue } from '../../src/smtp/queue.js';
import { envelope, makeRuntime, message, startSink, waitFor, type QueueFixture, type Sink } from './queue-fixture.js';

function dnsError(code: string): Error {
  return Object.assign(new Error(code), { code });
}

/** A fake resolver: exact answers per domain, so no test depends on the machine's DNS. */
function resolver(zone: Record<string, { mx?: Array<{ exchange: string; priority: number }> | string; a?: string[] | string; aaaa?: string[] | string }>): MxResolver {
  const answer = <T>(v: T | string | undefined, domain: string): Promise<T> => {
    if (!(domain in zone)) return Promise.reject(dnsError('ENOTFOUND'));
    if (v === undefined) return Promise.reject(dnsError('ENODATA'));
    if (typeof v === 'string') return Promise.reject(dnsError(v));
    return Promise.resolve(v);
  };
  return {
    resolveMx: (d) => answer(zone[d]?.mx, d),
    resolve4: (d) => answer(zone[d]?.a, d),
    resolve6: (d) => answer(zone[d]?.aaaa, d),
  };
}

describe('MX lookup', () => {
  it.each([
    ['MX records sorted by preference', { 'x.test': { mx: [{ exchange: 'b.x.test', priority: 20 }, { exchange: 'a.x.test', priority: 10 }] } }, { hosts: ['a.x.test', 'b.x.test'] }],
    ['no MX → A/AAAA of the domain', { 'x.test': { a: ['192.0.2.1'], aaaa: ['2001:db8::1'] } }, { hosts: ['192.0.2.1', '2001:db8::1'] }],
    ['null MX (RFC 7505) → permanent', { 'x.test': { mx: [{ exchange: '', priority: 0 }] } }, { permanent: true, status: '5.1.10' }],
    ['NXDOMAIN → permanent', {}, { permanent: true, status: '5.1.2' }],
    ['no MX and no address → permanent', { 'x.test': {} }, { permanent: true, status: '5.1.2' }],
    ['SERVFAIL on MX → temporary', { 'x.test': { mx: 'ESERVFAIL' } }, { permanent: false, status: '4.4.3' }],
    ['timeout on A after no MX → temporary', { 'x.test': { a: 'ETIMEOUT' } }, { permanent: false, status: '4.4.3' }],
  ])('%s', async (_name, zone, expected) => {
    expect(await mxHosts('x.test', resolver(zone))).toMatchObject(expected);
  });
});

describe('direct delivery to MX hosts', () => {
  let sink: Sink;
  let fx: QueueFixture;
  beforeAll(async () => {
    sink = await startSink();
    fx = await makeRuntime({ queue: { retry_s: [1] } });
  });
  afterAll(async () => {
    await sink.close();
    fx.cleanup();
  });

  it('groups recipients per domain, falls through an unreachable MX, reports per domain', async () => {
    const data = message('mx');
    const dns = resolver({
      'one.test': { mx: [{ exchange: '127.0.0.1', priority: 10 }] },
      // first MX refuses connections (nothing listens on 127.0.0.2 at the sink's port), second answers
      'two.test': { mx: [{ exchange: '127.0.0.2', priority: 5 }, { exchange: '127.0.0.1', priority: 10 }] },
      'null.test': { mx: [{ exchange: '.', priority: 0 }] },
    });
    const before = sink.messages.length;
    const out = await deliverDirect(
      { config: fx.rt.config, sender: 'a@example.org', recipients: ['x@one.test', 'y@two.test', 'z@two.test', 'n@null.test', 'g@gone.test'], data },
      { resolver: dns, mxPort: sink.port, connectionTimeoutMs: 2000, allowLoopbackMx: true },
    );
    expect(Object.fromEntries(out.map((o) => [o.address, o.result]))).toEqual({
      'x@one.test': 'delivered',
      'y@two.test': 'delivered',
      'z@two.test': 'delivered',
      'n@null.test': 'permanent',
      'g@gone.test': 'permanent',
    });
    const got = sink.messages.slice(before);
    expect(got.map((m) => m.to)).toEqual([['x@one.test'], ['y@two.test', 'z@two.test']]);
    for (const m of got) expect(m.data.equals(data)).toBe(true);
  });

  it('refuses MX hosts on local addresses (mail loop), by name or literal', async () => {
    const dns = resolver({
      'loop.test': { mx: [{ exchange: 'mx.loop.test', priority: 10 }] },
      'mx.loop.test': { a: ['127.0.0.1'], aaaa: ['::1'] },
      'lit.test': { a: ['127.0.0.9'] },
    });
    const before = sink.messages.length;
    const out = await deliverDirect({ config: fx.rt.config, sender: 'a@example.org', recipients: ['x@loop.test', 'y@lit.test'], data: message('loop') }, { resolver: dns, mxPort: sink.port });
    expect(out.map((o) => [o.address, o.result, o.status])).toEqual([
      ['x@loop.test', 'permanent', '5.4.6'],
      ['y@lit.test', 'permanent', '5.4.6'],
    ]);
    expect(sink.messages.length).toBe(before);
    expect(isLocalAddress('169.254.1.1')).toBe(true);
    expect(isLocalAddress('192.0.2.1')).toBe(false);
  });

  it('encrypts to an MX that offers STARTTLS (opportunistic, unverified, as Postfix "may"), and still delivers to one that does not', async () => {
    const tlsMx = await startSink({ tls: { key: fx.rt.tls.key, cert: fx.rt.tls.cert } }); // self-signed: not verified
    try {
      const data = message('mx-tls');
      for (const [mx, secure] of [
        [tlsMx, true],
        [sink, false],
      ] as const) {
        const before = mx.messages.length;
        const out = await deliverDirect(
          { config: fx.rt.config, sender: 'a@example.org', recipients: ['t@tls.test'], data },
          { resolver: resolver({ 'tls.test': { mx: [{ exchange: '127.0.0.1', priority: 10 }] } }), mxPort: mx.port, connectionTimeoutMs: 2000, allowLoopbackMx: true },
        );
        expect(out.map((o) => o.result)).toEqual(['delivered']);
        const got = mx.messages.slice(before);
        expect(got).toHaveLength(1);
        expect(got[0]!.secure).toBe(secure);
        expect(got[0]!.data.equals(data)).toBe(true);
      }
    } finally {
      await tlsMx.close();
    }
  });

  it('the queue uses direct delivery when no smarthost is configured', async () => {
    const q = createMailQueue(fx.rt, { tickMs: 100, delivery: { resolver: resolver({ 'remote.test': { a: ['127.0.0.1'] } }), mxPort: sink.port, allowLoopbackMx: true } });
    try {
      q.start();
      const before = sink.messages.length;
      await q.enqueue(envelope('a@example.org', ['r@remote.test']), message('mx-queue'));
      await waitFor(() => sink.messages.length === before + 1);
      expect(sink.messages.at(-1)!.to).toEqual(['r@remote.test']);
      await waitFor(() => q.spool.idsSync().length === 0);
    } finally {
      await q.stop(1000);
    }
  });
});
