import { describe, expect, it } from 'vitest';
import { compileLists, decideConnect, normalizeIp, type CompiledAccess } from '../../src/policy/network.js';

const empty: { allow: string[]; deny: string[] } = { allow: [], deny: [] };
function access(global: { allow: string[]; deny: string[] }, smtp = empty): CompiledAccess {
  return {
    global: compileLists('access', global),
    services: { smtp: compileLists('smtp.access', smtp), ftp: compileLists('ftp.access', empty), nntp: compileLists('nntp.access', empty) },
  };
}

describe('normalizeIp', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['::FFFF:127.0.0.1', '127.0.0.1'],
    ['::ffff:a01:203', '10.1.2.3'],
    ['[::1]', '::1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['2001:DB8::1', '2001:db8::1'],
    ['012.0.0.1', null],
    ['127.1', null],
    ['0x7f.0.0.1', null],
    ['', null],
    ['localhost', null],
  ])('%s → %s', (input, expected) => {
    expect(normalizeIp(input)).toBe(expected);
  });
});

describe('decideConnect', () => {
  const everyone = { allow: ['0.0.0.0/0', '::/0'], deny: [] as string[] };
  const rows: Array<[string, CompiledAccess, string, boolean, string]> = [
    ['default allow-all permits v4', access(everyone), '203.0.113.9', true, 'access.allow'],
    ['default allow-all permits v6', access(everyone), '2001:db8::5', true, 'access.allow'],
    ['global deny wins over allow', access({ ...everyone, deny: ['127.0.0.66/32'] }), '127.0.0.66', false, 'access.deny'],
    ['deny matches a v4-mapped v6 client', access({ ...everyone, deny: ['10.0.0.0/8'] }), '::ffff:10.1.2.3', false, 'access.deny'],
    ['deny matches hex-mapped v6 client', access({ ...everyone, deny: ['10.0.0.0/8'] }), '::ffff:a01:203', false, 'access.deny'],
    ['v6 deny', access({ ...everyone, deny: ['2001:db8::/32'] }), '2001:db8:1::1', false, 'access.deny'],
    ['service deny', access(everyone, { allow: [], deny: ['127.0.0.66'] }), '127.0.0.66', false, 'service.access.deny'],
    ['service allow narrows', access(everyone, { allow: ['127.0.0.0/8'], deny: [] }), '192.0.2.1', false, 'service.access.allow'],
    ['service allow lets through to global', access(everyone, { allow: ['127.0.0.0/8'], deny: [] }), '127.0.0.20', true, 'access.allow'],
    ['no global allow → default deny', access({ allow: ['127.0.0.0/8'], deny: [] }), '192.0.2.1', false, 'access.default'],
    ['garbage address is refused', access(everyone), 'not-an-ip', false, 'connect.address'],
    ['octal-looking address is refused', access(everyone), '012.0.0.1', false, 'connect.address'],
  ];
  it.each(rows)('%s', (_name, acc, ip, allow, rule) => {
    const d = decideConnect(acc, 'smtp', ip);
    expect(d.allow).toBe(allow);
    expect(d.rule).toBe(rule);
    expect(d.trace.length).toBeGreaterThan(0);
  });
});
