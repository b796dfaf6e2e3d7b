/* decideProxy: one row per rule (facts → decision), Postfix smtpd_check.in/.ref style. */
import { describe, expect, it } from 'vitest';
import { decideProxy, type ProxyFacts, type ProxyHeaderOutcome } from '../../src/policy/proxy.js';

const key = 'smtp.proxy_protocol.from';
const row = (listed: boolean, header: ProxyHeaderOutcome): ProxyFacts => ({ peer: '127.0.0.1', listed, header, key });

describe('decideProxy', () => {
  it.each<[string, ProxyFacts, boolean, string]>([
    ['a direct client sends no header', row(false, { kind: 'none' }), true, 'proxy.direct'],
    ['a direct client sends a PROXY header', row(false, { kind: 'proxy', version: 2, client: '127.0.0.1' }), false, 'proxy.unexpected'],
    ['a direct client sends a LOCAL header', row(false, { kind: 'local' }), false, 'proxy.unexpected'],
    ['a direct client sends a broken header', row(false, { kind: 'malformed', reason: 'x' }), false, 'proxy.unexpected'],
    ['a listed proxy sends no header', row(true, { kind: 'none' }), false, 'proxy.missing'],
    ['a listed proxy sends half a header', row(true, { kind: 'timeout' }), false, 'proxy.timeout'],
    ['a listed proxy sends garbage', row(true, { kind: 'malformed', reason: 'v2 version 3 is not 2' }), false, 'proxy.malformed'],
    ['a listed proxy relays a UNIX/UNKNOWN client', row(true, { kind: 'proxy', version: 1, client: null }), false, 'proxy.unsupported'],
    ['a listed proxy health-checks (LOCAL)', row(true, { kind: 'local' }), true, 'proxy.health_check'],
    ['a listed proxy relays a client (v2)', row(true, { kind: 'proxy', version: 2, client: '127.0.0.20' }), true, 'proxy.accepted'],
    ['a listed proxy relays a client (v1)', row(true, { kind: 'proxy', version: 1, client: '2001:db8::1' }), true, 'proxy.accepted'],
  ])('%s', (_name, facts, allowed, rule) => {
    const d = decideProxy(facts);
    expect(d.allow).toBe(allowed);
    expect(d.rule).toBe(rule);
  });

  it('names the key and the client in its reasons', () => {
    expect(decideProxy(row(false, { kind: 'local' })).reason).toContain(key);
    expect(decideProxy(row(true, { kind: 'proxy', version: 2, client: '127.0.0.20' })).reason).toBe('client 127.0.0.20 via proxy 127.0.0.1 (PROXY v2)');
  });
});
