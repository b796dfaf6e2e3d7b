/*
 * NAME
 *   policy/network — may this client address talk to this service at all?
 *
 * THREAT
 *   Abusive or out-of-scope clients reaching a listener; address spellings that slip past a naive matcher
 *   (`::ffff:10.1.2.3` for 10.1.2.3, `012.0.0.1` read as decimal). Addresses are validated with net.isIP
 *   (which refuses leading zeros and short forms) and reduced to one canonical form (normalizeIp: mapped
 *   IPv6 becomes IPv4) before any match. Matching is prefix arithmetic on the parsed address (four 32-bit
 *   words), never on strings; an address of the other family never matches. (node:net BlockList did this
 *   until December 2026: each check built a SocketAddress in C++, ~20 µs per connection on a slow core;
 *   test/policy/network.test.ts checks this matcher against BlockList on random addresses and prefixes.)
 *
 * RULES (first non-dunno wins, default reject)
 *   <service>.access.deny[i]   reject   the address is in a per-service deny entry
 *   access.deny[i]             reject   the address is in a global deny entry
 *   <service>.access.allow     reject   the service narrows the allow list and the address is not in it
 *   access.allow[i]            permit   the address is in a global allow entry
 *   access.default             reject   nothing allowed it
 */
import net from 'node:net';
import { evaluate, permit, reject, dunno, type Rule } from './decision.js';
import type { Decision, Service } from './types.js';

export interface CidrRule {
  readonly name: string;
  readonly cidr: string;
  readonly family: 'ipv4' | 'ipv6';
  /** the network address as four 32-bit words (IPv4: one word, the others 0) */
  readonly network: readonly [number, number, number, number];
  readonly prefix: number;
}

export interface AccessLists {
  readonly allow: readonly CidrRule[];
  readonly deny: readonly CidrRule[];
}

export interface CompiledAccess {
  readonly global: AccessLists;
  readonly services: Readonly<Record<Service, AccessLists>>;
}

/**
 * Canonical form of an address, the ONE normaliser config and listeners share: IPv4 stays as net.isIP accepts
 * it; every IPv6 spelling of an IPv4-mapped address (`::ffff:203.0.113.5`, `::ffff:cb00:7105`,
 * `0:0:0:0:0:ffff:cb00:7105`, `0::ffff:…`, upper case, brackets, a zone) becomes that IPv4 address; any other
 * IPv6 address becomes its RFC 5952 text (lower case, longest zero run as `::`), so two spellings of one address
 * are one string. Anything unparsable is null.
 */
export function normalizeIp(address: string | undefined | null): string | null {
  if (!address) return null;
  let a = address.trim();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  const family = net.isIP(a);
  if (family === 4) return a;
  if (family !== 6) return null;
  // the spelling dual-stack sockets report for every IPv4 client: skip the general parse
  if ((a.startsWith('::ffff:') || a.startsWith('::FFFF:')) && net.isIP(a.slice(7)) === 4) return a.slice(7);
  const w = addressWords(a, 6);
  if (!w) return null;
  if (w[0] === 0 && w[1] === 0 && w[2] === 0xffff) return wordsToText(w, 4);
  return wordsToText(w, 6);
}

/** Text of an address given as four 32-bit words: IPv4 dotted from the last word, IPv6 in RFC 5952 form. */
function wordsToText(w: readonly [number, number, number, number], family: 4 | 6): string {
  if (family === 4) {
    const x = w[3];
    return `${x >>> 24}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${x & 255}`;
  }
  const g = [w[0] >>> 16, w[0] & 0xffff, w[1] >>> 16, w[1] & 0xffff, w[2] >>> 16, w[2] & 0xffff, w[3] >>> 16, w[3] & 0xffff];
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestAt) {
      out += i === 0 ? '::' : ':';
      i += bestLen - 1;
      continue;
    }
    out += g[i]!.toString(16);
    if (i < 7) out += ':';
  }
  return out;
}

export function familyOf(ip: string): 'ipv4' | 'ipv6' {
  return net.isIP(ip) === 6 ? 'ipv6' : 'ipv4';
}

/**
 * Four 32-bit words of a valid address (IPv4: the first word). The caller has validated it with net.isIP;
 * anything else gives null. Handles `::` and a dotted IPv4 tail (`64:ff9b::192.0.2.1`).
 */
export function addressWords(ip: string, family: 4 | 6): [number, number, number, number] | null {
  if (family === 4) {
    const p = ip.split('.');
    if (p.length !== 4) return null;
    let w = 0;
    for (const part of p) {
      const n = Number(part);
      if (!Number.isInteger(n) || n < 0 || n > 255) return null;
      w = w * 256 + n;
    }
    return [w >>> 0, 0, 0, 0];
  }
  // One pass over the characters (this runs for every connection): groups before and after `::`, and a dotted
  // IPv4 tail standing for the last two groups.
  const head: number[] = [];
  const tail: number[] = [];
  let cur = head;
  let group = 0;
  let digits = 0;
  const n = ip.length;
  for (let i = 0; i < n; i++) {
    const ch = ip.charCodeAt(i);
    if (ch === 58 /* : */) {
      if (digits > 0) cur.push(group);
      else if (i > 0 && ip.charCodeAt(i - 1) === 58) {
        if (cur === tail) return null; // a second `::`
        cur = tail;
      } else if (i > 0) return null;
      group = 0;
      digits = 0;
      continue;
    }
    if (ch === 46 /* . */) {
      // dotted tail: from the start of this group to the end
      const v4 = addressWords(ip.slice(i - digits), 4);
      if (!v4) return null;
      cur.push(v4[0] >>> 16, v4[0] & 0xffff);
      digits = -1;
      break;
    }
    const v = ch >= 48 && ch <= 57 ? ch - 48 : ch >= 97 && ch <= 102 ? ch - 87 : ch >= 65 && ch <= 70 ? ch - 55 : -1;
    if (v < 0 || digits === 4) return null;
    group = group * 16 + v;
    digits++;
  }
  if (digits > 0) cur.push(group);
  const fill = 8 - head.length - tail.length;
  if (fill < 0 || (cur === head && fill !== 0)) return null;
  const g = cur === tail ? [...head, ...new Array<number>(fill).fill(0), ...tail] : head;
  if (g.length !== 8) return null;
  return [((g[0]! << 16) | g[1]!) >>> 0, ((g[2]! << 16) | g[3]!) >>> 0, ((g[4]! << 16) | g[5]!) >>> 0, ((g[6]! << 16) | g[7]!) >>> 0];
}

export function compileCidr(name: string, cidr: string): CidrRule {
  const [addr, bits] = cidr.split('/') as [string, string | undefined];
  const ip = normalizeIp(addr);
  if (!ip) throw new Error(`${name}: not an IP address: ${cidr}`);
  const family = familyOf(ip);
  const max = family === 'ipv4' ? 32 : 128;
  const given = bits === undefined ? max : Number(bits);
  // A v4-mapped v6 literal in the config is treated as the v4 network it names.
  const v4From6 = family === 'ipv4' && net.isIP(addr) === 6;
  const prefix = v4From6 ? Math.max(0, given - 96) : given;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new Error(`${name}: prefix length must be 0-${max}: ${cidr}`);
  const network = addressWords(ip, family === 'ipv4' ? 4 : 6);
  if (!network) throw new Error(`${name}: not an IP address: ${cidr}`);
  return { name, cidr, family, network, prefix };
}

/** The last address parsed: a connection's checks all ask about the same one. */
let lastIp = '';
let lastWords: [number, number, number, number] | null = null;
let lastFamily: 'ipv4' | 'ipv6' = 'ipv4';

/** Is `ip` (any spelling normalizeIp accepts) inside the rule's network? Other families and non-addresses never match. */
export function cidrMatches(rule: CidrRule, ip: string): boolean {
  if (ip !== lastIp) {
    const n = normalizeIp(ip);
    const family = n === null ? 0 : net.isIP(n);
    lastWords = n === null || family === 0 ? null : addressWords(n, family === 6 ? 6 : 4);
    lastFamily = family === 6 ? 'ipv6' : 'ipv4';
    lastIp = ip;
  }
  const words = lastWords;
  if (words === null || lastFamily !== rule.family) return false;
  let left = rule.prefix;
  for (let i = 0; i < 4 && left > 0; i++) {
    const take = Math.min(32, left);
    const mask = take === 32 ? 0xffffffff : (0xffffffff << (32 - take)) >>> 0;
    if (((words[i]! ^ rule.network[i]!) & mask) !== 0) return false;
    left -= take;
  }
  return true;
}

export function compileLists(prefix: string, lists: { allow: readonly string[]; deny: readonly string[] }): AccessLists {
  return {
    allow: lists.allow.map((c, i) => compileCidr(`${prefix}.allow[${i}]`, c)),
    deny: lists.deny.map((c, i) => compileCidr(`${prefix}.deny[${i}]`, c)),
  };
}

export interface ConnectFacts {
  readonly service: Service;
  readonly ip: string | null;
}

const connectRuleCache = new WeakMap<CompiledAccess, Rule<ConnectFacts>[]>();

export function connectRules(access: CompiledAccess): Rule<ConnectFacts>[] {
  const cached = connectRuleCache.get(access);
  if (cached) return cached;
  const rules = buildConnectRules(access);
  connectRuleCache.set(access, rules);
  return rules;
}

function buildConnectRules(access: CompiledAccess): Rule<ConnectFacts>[] {
  const firstMatch = (rules: readonly CidrRule[], ip: string) => rules.find((r) => cidrMatches(r, ip));
  return [
    {
      name: 'connect.address',
      check: (f) => (f.ip === null ? reject('client address is not a valid IP address') : dunno(`${f.ip} is a valid address`)),
    },
    {
      name: 'service.access.deny',
      check: (f) => {
        const hit = firstMatch(access.services[f.service].deny, f.ip!);
        return hit ? reject(`${f.ip} is in ${f.service}.access.deny (${hit.cidr}) [${hit.name}]`) : dunno(`${f.ip} is in no ${f.service}.access.deny entry`);
      },
    },
    {
      name: 'access.deny',
      check: (f) => {
        const hit = firstMatch(access.global.deny, f.ip!);
        return hit ? reject(`${f.ip} is in access.deny (${hit.cidr}) [${hit.name}]`) : dunno(`${f.ip} is in no access.deny entry`);
      },
    },
    {
      name: 'service.access.allow',
      check: (f) => {
        const allow = access.services[f.service].allow;
        if (allow.length === 0) return dunno(`${f.service}.access.allow is empty: the global list decides`);
        return firstMatch(allow, f.ip!) ? dunno(`${f.ip} is in ${f.service}.access.allow`) : reject(`${f.ip} is not in ${f.service}.access.allow`);
      },
    },
    {
      name: 'access.allow',
      check: (f) => {
        const hit = firstMatch(access.global.allow, f.ip!);
        return hit ? permit(`${f.ip} is in access.allow (${hit.cidr}) [${hit.name}]`) : dunno(`${f.ip} is in no access.allow entry`);
      },
    },
  ];
}

export function decideConnect(access: CompiledAccess, service: Service, rawIp: string | undefined | null): Decision {
  const facts: ConnectFacts = { service, ip: normalizeIp(rawIp) };
  return evaluate(connectRules(access), facts, { rule: 'access.default', reason: 'no allow entry matched; default deny' });
}

/*
 * Coverage: what an address list means, whatever its spelling. `check` and the loader judge trusted networks by
 * the set of addresses they cover (merged ranges per family), never by the strings: `0.0.0.0/1` + `128.0.0.0/1`
 * is all of IPv4 just as `0.0.0.0/0` and `::ffff:0.0.0.0/96` are.
 */

/** First and last address of a rule, as integers of its family (IPv4: 32 bits, IPv6: 128 bits). */
export function cidrRange(rule: CidrRule): [bigint, bigint] {
  const bitsTotal = rule.family === 'ipv4' ? 32 : 128;
  const value = rule.family === 'ipv4' ? BigInt(rule.network[0]) : rule.network.reduce((acc, w) => (acc << 32n) | BigInt(w), 0n);
  const hostBits = BigInt(bitsTotal - rule.prefix);
  const start = (value >> hostBits) << hostBits;
  return [start, start + (1n << hostBits) - 1n];
}

function mergeRanges(ranges: Array<[bigint, bigint]>): Array<[bigint, bigint]> {
  const sorted = [...ranges].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: Array<[bigint, bigint]> = [];
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1];
    if (last && lo <= last[1] + 1n) {
      if (hi > last[1]) last[1] = hi;
    } else out.push([lo, hi]);
  }
  return out;
}

/** Non-public space: loopback, RFC 1918, shared CGNAT, link-local, IPv6 ULA and link-local. Everything else counts as public. */
const NON_PUBLIC = ['127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '169.254.0.0/16', '::1/128', 'fc00::/7', 'fe80::/10'];
const nonPublic = {
  ipv4: mergeRanges(NON_PUBLIC.map((c) => compileCidr('non-public', c)).filter((r) => r.family === 'ipv4').map(cidrRange)),
  ipv6: mergeRanges(NON_PUBLIC.map((c) => compileCidr('non-public', c)).filter((r) => r.family === 'ipv6').map(cidrRange)),
};

/** Does the range reach outside every non-public range (so some public address is in it)? */
function reachesPublic(family: 'ipv4' | 'ipv6', [lo, hi]: [bigint, bigint]): boolean {
  let next = lo;
  for (const [plo, phi] of nonPublic[family]) {
    if (phi < next) continue;
    if (plo > next) return true; // a gap before this private range
    next = phi + 1n;
    if (next > hi) return false;
  }
  return next <= hi;
}

export interface Coverage {
  /** addresses covered, after merging overlaps */
  readonly ipv4: bigint;
  readonly ipv6: bigint;
  /** the list covers every IPv4 address, or every IPv6 address */
  readonly everything: boolean;
  /** entries that cover at least one public address */
  readonly publicEntries: readonly string[];
  /** the largest k such that each family's coverage fits in 1/2^k of it (8: no more than one /8 of IPv4); 0 = more than half */
  readonly shareBits: number;
}

export const IPV4_SIZE = 1n << 32n;
export const IPV6_SIZE = 1n << 128n;

/** What a list of CIDRs covers. Throws (like compileCidr) on an entry that is not an address. */
export function coverage(name: string, cidrs: readonly string[]): Coverage {
  const rules = cidrs.map((c, i) => compileCidr(`${name}[${i}]`, c));
  const size = (family: 'ipv4' | 'ipv6') => mergeRanges(rules.filter((r) => r.family === family).map(cidrRange)).reduce((n, [lo, hi]) => n + hi - lo + 1n, 0n);
  const ipv4 = size('ipv4');
  const ipv6 = size('ipv6');
  const bitsOf = (n: bigint, total: number) => {
    if (n === 0n) return Infinity;
    // smallest k with n <= 2^(total-k): the share is at least 2^-k
    let k = 0;
    while (k < total && n <= 1n << BigInt(total - k - 1)) k++;
    return k;
  };
  return {
    ipv4,
    ipv6,
    everything: ipv4 === IPV4_SIZE || ipv6 === IPV6_SIZE,
    publicEntries: rules.filter((r) => reachesPublic(r.family, cidrRange(r))).map((r) => r.cidr),
    shareBits: Math.min(bitsOf(ipv4, 32), bitsOf(ipv6, 128)),
  };
}
