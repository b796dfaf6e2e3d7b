/*
 * NAME
 *   policy/network — may this client address talk to this service at all?
 *
 * THREAT
 *   Abusive or out-of-scope clients reaching a listener; address spellings that slip past a naive matcher
 *   (`::ffff:10.1.2.3` for 10.1.2.3, `012.0.0.1` read as decimal). Addresses are validated with net.isIP
 *   (which refuses leading zeros and short forms) and matched with node:net BlockList, always passing the
 *   family explicitly (BlockList.check defaults to ipv4 and then misses mapped addresses).
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
  readonly list: net.BlockList;
}

export interface AccessLists {
  readonly allow: readonly CidrRule[];
  readonly deny: readonly CidrRule[];
}

export interface CompiledAccess {
  readonly global: AccessLists;
  readonly services: Readonly<Record<Service, AccessLists>>;
}

/** Canonical form of a client address: IPv4-mapped IPv6 becomes IPv4; anything unparsable is null. */
export function normalizeIp(address: string | undefined | null): string | null {
  if (!address) return null;
  let a = address.trim();
  if (a.startsWith('[') && a.endsWith(']')) a = a.slice(1, -1);
  const zone = a.indexOf('%');
  if (zone >= 0) a = a.slice(0, zone);
  const family = net.isIP(a);
  if (family === 4) return a;
  if (family !== 6) return null;
  const lower = a.toLowerCase();
  const mapped = /^(?:0{0,4}:){0,5}(?:0{0,4}:)?ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower) ?? /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (mapped && net.isIP(mapped[1]!) === 4) return mapped[1]!;
  const hexMapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (hexMapped) {
    const hi = parseInt(hexMapped[1]!, 16);
    const lo = parseInt(hexMapped[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return lower;
}

export function familyOf(ip: string): 'ipv4' | 'ipv6' {
  return net.isIP(ip) === 6 ? 'ipv6' : 'ipv4';
}

export function compileCidr(name: string, cidr: string): CidrRule {
  const list = new net.BlockList();
  const [addr, bits] = cidr.split('/') as [string, string | undefined];
  const ip = normalizeIp(addr);
  if (!ip) throw new Error(`${name}: not an IP address: ${cidr}`);
  const type = familyOf(ip);
  const max = type === 'ipv4' ? 32 : 128;
  const prefix = bits === undefined ? max : Number(bits);
  // A v4-mapped v6 literal in the config is treated as the v4 network it names.
  const v4From6 = type === 'ipv4' && net.isIP(addr) === 6;
  list.addSubnet(ip, v4From6 ? Math.max(0, prefix - 96) : prefix, type);
  return { name, cidr, list };
}

export function cidrMatches(rule: CidrRule, ip: string): boolean {
  return rule.list.check(ip, familyOf(ip));
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

export function connectRules(access: CompiledAccess): Rule<ConnectFacts>[] {
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
