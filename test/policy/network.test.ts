import { describe, expect, it } from 'vitest';
import net from 'node:net';
import { rng } from '../../bench/fuzz/fuzzer.js'; // mulberry32: the same inputs on every run
import { addressWords, cidrMatches, compileCidr, compileLists, decideConnect, normalizeIp, type CompiledAccess } from '../../src/policy/network.js';

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

describe('cidrMatches (prefix arithmetic) agrees with node:net BlockList', () => {
  const rand = rng(20261201);
  const int = (n: number) => Math.floor(rand() * n);
  const v4 = () => [int(256), int(256), int(256), int(256)].join('.');
  /** IPv6 in the spellings clients and configs use: full, `::`-compressed, dotted tail, upper case */
  const v6 = () => {
    const g = Array.from({ length: 8 }, () => (rand() < 0.4 ? 0 : int(0x10000)));
    if (rand() < 0.2) g.splice(0, 6, 0x2001, 0xdb8, 0, 0, 0, 0);
    const full = g.map((x) => x.toString(16)).join(':');
    const pick = rand();
    if (pick < 0.25) return full;
    if (pick < 0.5) return `${g.slice(0, 6).map((x) => x.toString(16)).join(':')}:${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`;
    if (pick < 0.6) return full.toUpperCase();
    const s = full.replace(/(^|:)0(:0)+(:|$)/, '::');
    return net.isIP(s) === 6 ? s : full;
  };
  /** an address near the network: same prefix most of the time, so both outcomes are exercised */
  const near = (base: string, family: 4 | 6) => {
    if (family === 4) {
      const p = base.split('.').map(Number);
      p[3 - int(2)] = int(256);
      return p.join('.');
    }
    const words = addressWords(base, 6)!;
    const groups = words.flatMap((w) => [w >>> 16, w & 0xffff]);
    groups[7 - int(4)] = int(0x10000);
    return groups.map((x) => x.toString(16)).join(':');
  };

  it('on 20,000 random (network, prefix, address) triples of both families', () => {
    let matched = 0;
    for (let i = 0; i < 20_000; i++) {
      const family = rand() < 0.5 ? 4 : 6;
      const base = family === 4 ? v4() : v6();
      const max = family === 4 ? 32 : 128;
      const prefix = rand() < 0.1 ? max : int(max + 1);
      const rule = compileCidr('t', `${base}/${prefix}`);
      const list = new net.BlockList();
      const n = normalizeIp(base)!;
      list.addSubnet(n, prefix, family === 4 ? 'ipv4' : 'ipv6');
      const ip = rand() < 0.6 ? near(n, family) : rand() < 0.5 ? v4() : v6();
      const client = normalizeIp(ip)!;
      const expected = net.isIP(client) === (family === 4 ? 4 : 6) && list.check(client, family === 4 ? 'ipv4' : 'ipv6');
      const got = cidrMatches(rule, client);
      if (got !== expected) throw new Error(`${base}/${prefix} vs ${ip} (${client}): BlockList ${expected}, cidrMatches ${got}`);
      if (got) matched++;
    }
    expect(matched).toBeGreaterThan(3_000); // both outcomes were exercised
    expect(matched).toBeLessThan(17_000);
  });

  it.each([
    ['10.0.0.0/8', '::ffff:10.9.8.7', true], // mapped spelling of a v4 client
    ['::ffff:10.0.0.0/104', '10.1.2.3', true], // mapped spelling in the config
    ['::ffff:0:0/96', '192.0.2.1', true], // all of IPv4
    ['0.0.0.0/0', '2001:db8::1', false], // families never mix
    ['::/0', '127.0.0.1', false],
    ['64:ff9b::/96', '64:ff9b::192.0.2.1', true], // dotted tail in a v6 address
    ['2001:db8::/32', '2001:DB8:FFFF::1', true],
    ['2001:db8::/33', '2001:db8:8000::1', false],
    ['127.0.0.1/32', 'not-an-ip', false],
    ['127.0.0.1/32', '0127.0.0.1', false],
  ])('%s contains %s: %s', (cidr, ip, expected) => {
    expect(cidrMatches(compileCidr('t', cidr), ip)).toBe(expected);
  });

  it.each([['10.0.0.0/33'], ['::/129'], ['10.0.0.0/-1'], ['10.0.0.0/x'], ['10.0.0/8'], ['example.org/8']])('%s is a config error', (cidr) => {
    expect(() => compileCidr('access.allow[0]', cidr)).toThrow(/access\.allow\[0\]/);
  });
});
