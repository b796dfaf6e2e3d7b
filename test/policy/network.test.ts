import { describe, expect, it } from 'vitest';
import { decideRecipient, type RelayScope } from '../../src/policy/relay.js';
import { NOBODY } from '../../src/policy/types.js';
import net from 'node:net';
import { rng } from '../../bench/fuzz/fuzzer.js'; // mulberry32: the same inputs on every run
import { addressWords, cidrMatches, compileCidr, compileLists, coverage, decideConnect, normalizeIp, type CompiledAccess } from '../../src/policy/network.js';

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

describe('one normaliser for every spelling of an IPv4-mapped address (issue 14)', () => {
  it.each([
    ['0:0:0:0:0:ffff:cb00:7105', '203.0.113.5'],
    ['0::ffff:cb00:7105', '203.0.113.5'],
    ['::ffff:cb00:7105', '203.0.113.5'],
    ['::ffff:203.0.113.5', '203.0.113.5'],
    ['0000:0000:0000:0000:0000:FFFF:CB00:7105', '203.0.113.5'],
    ['0:0:0:0:0:ffff:203.0.113.5', '203.0.113.5'],
    ['0:0::ffff:203.0.113.5', '203.0.113.5'],
    ['[::ffff:cb00:7105]', '203.0.113.5'],
    ['::ffff:0:0', '0.0.0.0'],
    // not mapped: different addresses, kept IPv6 and written one way (RFC 5952)
    ['::cb00:7105', '::cb00:7105'],
    ['64:ff9b::203.0.113.5', '64:ff9b::cb00:7105'],
    ['0:0:0:0:1:ffff:cb00:7105', '::1:ffff:cb00:7105'],
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['::', '::'],
  ])('%s → %s', (input, expected) => {
    expect(normalizeIp(input)).toBe(expected);
  });

  it('access.deny written in a long mapped spelling blocks the IPv4 client it names', () => {
    const acc = access({ allow: ['0.0.0.0/0', '::/0'], deny: ['0:0:0:0:0:ffff:cb00:7100/120'] });
    for (const client of ['203.0.113.5', '::ffff:203.0.113.5', '0:0:0:0:0:ffff:cb00:7105']) {
      expect(decideConnect(acc, 'smtp', client)).toMatchObject({ allow: false, rule: 'access.deny' });
    }
    expect(decideConnect(acc, 'smtp', '203.0.114.5')).toMatchObject({ allow: true });
  });

  it('property: every spelling of one address, against every spelling of one rule, gets one verdict (1,500 seeded cases)', () => {
    const rand = rng(20261206);
    const int = (n: number) => Math.floor(rand() * n);
    const hex = (x: number, upper: boolean) => (upper ? x.toString(16).toUpperCase() : x.toString(16));
    const spellings = (a: number[]): string[] => {
      const dotted = a.join('.');
      const hi = (a[0]! << 8) | a[1]!;
      const lo = (a[2]! << 8) | a[3]!;
      const up = rand() < 0.5;
      return [
        dotted,
        `::ffff:${dotted}`,
        `::FFFF:${dotted}`,
        `::ffff:${hex(hi, up)}:${hex(lo, up)}`,
        `0:0:0:0:0:ffff:${hex(hi, up)}:${hex(lo, up)}`,
        `0::ffff:${hex(hi, up)}:${hex(lo, up)}`,
        `0000:0000:0000:0000:0000:ffff:${hi.toString(16).padStart(4, '0')}:${lo.toString(16).padStart(4, '0')}`,
        `0:0:0::ffff:${dotted}`,
        `[::ffff:${dotted}]`,
      ];
    };
    let denied = 0;
    for (let i = 0; i < 1_500; i++) {
      const client = [int(256), int(256), int(256), int(256)];
      const net4 = rand() < 0.6 ? [...client] : [int(256), int(256), int(256), int(256)];
      const prefix = 8 + int(25);
      // the rule written as IPv4 CIDR or as any mapped spelling with the prefix + 96
      const ruleSpellings = spellings(net4).filter((s) => !s.startsWith('[')).map((s, j) => (j === 0 ? `${s}/${prefix}` : `${s}/${prefix + 96}`));
      const verdicts = new Set<string>();
      for (const rule of ruleSpellings) {
        const acc = access({ allow: ['0.0.0.0/0', '::/0'], deny: [rule] });
        for (const s of spellings(client)) {
          expect(normalizeIp(s)).toBe(client.join('.'));
          verdicts.add(`${decideConnect(acc, 'ftp', s).allow}`);
        }
      }
      expect(verdicts.size, `${client.join('.')} against ${ruleSpellings.join(' | ')}`).toBe(1);
      if (verdicts.has('false')) denied++;
    }
    expect(denied).toBeGreaterThan(150);
    expect(denied).toBeLessThan(1_350);
  }, 120_000);

  it('property: every IPv6 spelling of one IPv6 address normalises to one string (2,000 seeded cases)', () => {
    const rand = rng(7);
    const int = (n: number) => Math.floor(rand() * n);
    for (let i = 0; i < 2_000; i++) {
      const g = Array.from({ length: 8 }, () => (rand() < 0.5 ? 0 : int(0x10000)));
      if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) continue; // mapped: covered above
      const full = g.map((x) => x.toString(16)).join(':');
      const padded = g.map((x) => x.toString(16).padStart(4, '0')).join(':').toUpperCase();
      const one = normalizeIp(full);
      expect(one).not.toBeNull();
      expect(normalizeIp(padded)).toBe(one);
      expect(normalizeIp(`[${full}]`)).toBe(one);
      expect(normalizeIp(one)).toBe(one); // idempotent
      expect(net.isIP(one!)).toBe(6);
    }
  });
});

describe('coverage: address lists judged by what they cover, not how they are written', () => {
  it.each<[string[], boolean, string[], number]>([
    [['0.0.0.0/0'], true, ['0.0.0.0/0'], 0],
    [['0.0.0.0/00'], true, ['0.0.0.0/00'], 0],
    [['0::0/0'], true, ['0::0/0'], 0],
    [['::ffff:0.0.0.0/96'], true, ['::ffff:0.0.0.0/96'], 0],
    [['0.0.0.0/1', '128.0.0.0/1'], true, ['0.0.0.0/1', '128.0.0.0/1'], 0],
    [['0.0.0.0/2', '64.0.0.0/2', '128.0.0.0/2', '192.0.0.0/2'], true, ['0.0.0.0/2', '64.0.0.0/2', '128.0.0.0/2', '192.0.0.0/2'], 0],
    [['0.0.0.0/1', '128.0.0.0/2'], false, ['0.0.0.0/1', '128.0.0.0/2'], 0], // three quarters: fits in no share smaller than all
    [['10.0.0.0/8'], false, [], 8],
    [['10.0.0.0/8', '10.1.0.0/16'], false, [], 8], // overlaps count once
    [['10.0.0.0/8', '192.168.0.0/16'], false, [], 7], // more than a /8 in total
    [['10.0.0.0/7'], false, ['10.0.0.0/7'], 7], // 11.0.0.0/8 is public
    [['198.51.100.0/24'], false, ['198.51.100.0/24'], 24],
    [['127.0.0.1/32', '::1/128'], false, [], 32],
    [['fc00::/7'], false, [], 7],
    [['2001:db8::/32'], false, ['2001:db8::/32'], 32],
  ])('%j: everything %s, public %j, share 1/2^%i', (list, everything, pub, bits) => {
    const c = coverage('t', list);
    expect(c.everything).toBe(everything);
    expect(c.publicEntries).toEqual(pub);
    expect(c.shareBits).toBe(bits);
  });
});

describe('relay: trusted_networks in any spelling, client in any spelling, one verdict', () => {
  it('property: 400 seeded cases; and 198.51.100.7 never relays unless it is trusted', () => {
    const rand = rng(14);
    const int = (n: number) => Math.floor(rand() * n);
    let relayed = 0;
    for (let i = 0; i < 400; i++) {
      const a = [int(256), int(256), int(256), int(256)];
      const hex = ((a[0]! << 8) | a[1]!).toString(16) + ':' + ((a[2]! << 8) | a[3]!).toString(16);
      const prefix = 8 + int(25);
      const nets = [`${a.join('.')}/${prefix}`, `::ffff:${a.join('.')}/${prefix + 96}`, `0:0:0:0:0:ffff:${hex}/${prefix + 96}`];
      const client = rand() < 0.5 ? a : [int(256), int(256), int(256), int(256)];
      const chex = ((client[0]! << 8) | client[1]!).toString(16) + ':' + ((client[2]! << 8) | client[3]!).toString(16);
      const spellings = [client.join('.'), `::ffff:${client.join('.')}`, `0:0:0:0:0:ffff:${chex}`, `0::ffff:${chex}`];
      const verdicts = new Set<boolean>();
      for (const n of nets) {
        const scope: RelayScope = { localDomains: new Set(), trustedNetworks: [compileCidr('smtp.trusted_networks[0]', n)], localUserExists: () => false };
        for (const s of spellings) verdicts.add(decideRecipient(scope, normalizeIp(s) ?? s, NOBODY, 'bob@example.net').decision.allow);
      }
      if (verdicts.size !== 1) throw new Error(`${spellings.join(' | ')} against ${nets.join(' | ')}: verdicts differ`);
      if (verdicts.has(true)) relayed++;
    }
    expect(relayed).toBeGreaterThan(100); // both verdicts were exercised
    expect(relayed).toBeLessThan(350);
    const loopbackOnly: RelayScope = { localDomains: new Set(), trustedNetworks: ['127.0.0.1/32', '::1/128'].map((c) => compileCidr('t', c)), localUserExists: () => false };
    for (const s of ['198.51.100.7', '::ffff:198.51.100.7', '0:0:0:0:0:ffff:c633:6407', '0::ffff:c633:6407']) {
      expect(decideRecipient(loopbackOnly, normalizeIp(s) ?? s, NOBODY, 'bob@example.net').decision).toMatchObject({ allow: false, rule: 'relay.default' });
    }
  }, 60_000);
});
