/*
 * NAME
 *   policy/proxy — may this connection's PROXY protocol header (or its absence) be believed?
 *
 * THREAT
 *   A PROXY header rewrites the client address every other rule looks at (access lists, trusted networks,
 *   lockouts). Believed from anyone, it lets any client claim 127.0.0.1 and relay through a trusted network;
 *   ignored from the balancer, every client looks like the balancer. So: only peers in
 *   `<service>.proxy_protocol.from` may send one, and they must (HAProxy's spec: the receiver must never
 *   guess); a header from anyone else is a protocol error; a header the parser cannot read, or one for a
 *   family this server cannot take a client address from, fails closed (the proxy's own address is never
 *   used in the client's place). A LOCAL header (the balancer's health check) is answered, not relayed.
 *
 * RULES
 *   proxy.unexpected     reject   a PROXY header from a peer that is not in proxy_protocol.from
 *   proxy.direct         permit   no header from a peer that is not listed: an ordinary direct client
 *   proxy.missing        reject   a listed proxy's connection did not start with a PROXY header
 *   proxy.timeout        reject   a listed proxy did not complete its header in time (half a header)
 *   proxy.malformed      reject   the header is not valid v1/v2 (or longer than the bound)
 *   proxy.unsupported    reject   a PROXY header without a TCP/IPv4 or TCP/IPv6 client (UNKNOWN, UNIX, UDP, UNSPEC)
 *   proxy.health_check   permit   a LOCAL header: the proxy's own connection (never logged, never a client)
 *   proxy.accepted       permit   a listed proxy relays the client in the header
 *   proxy.default        reject
 */
import { dunno, evaluate, permit, reject, type Rule } from './decision.js';
import type { Decision } from './types.js';

export type ProxyHeaderOutcome =
  | { readonly kind: 'none' }
  | { readonly kind: 'timeout' }
  | { readonly kind: 'malformed'; readonly reason: string }
  | { readonly kind: 'local' }
  | { readonly kind: 'proxy'; readonly version: 1 | 2; readonly client: string | null };

export interface ProxyFacts {
  /** the TCP peer: the proxy, or a direct client */
  readonly peer: string;
  /** is the peer in `<service>.proxy_protocol.from`? */
  readonly listed: boolean;
  readonly header: ProxyHeaderOutcome;
  /** the config key, for the reason text */
  readonly key: string;
}

const rules: readonly Rule<ProxyFacts>[] = [
  {
    name: 'proxy.unexpected',
    check: (f) => (!f.listed && f.header.kind !== 'none' ? reject(`PROXY header from ${f.peer}, which is not in ${f.key}`) : dunno()),
  },
  {
    name: 'proxy.direct',
    check: (f) => (!f.listed ? permit(`${f.peer} is not a listed proxy and sent no header: a direct client`) : dunno(`${f.peer} is in ${f.key}`)),
  },
  {
    name: 'proxy.missing',
    check: (f) => (f.header.kind === 'none' ? reject(`connection from proxy ${f.peer} did not start with a PROXY header`) : dunno()),
  },
  {
    name: 'proxy.timeout',
    check: (f) => (f.header.kind === 'timeout' ? reject(`proxy ${f.peer} did not send a whole PROXY header in time`) : dunno()),
  },
  {
    name: 'proxy.malformed',
    check: (f) => (f.header.kind === 'malformed' ? reject(`invalid PROXY header from ${f.peer}: ${f.header.reason}`) : dunno()),
  },
  {
    name: 'proxy.unsupported',
    check: (f) => (f.header.kind === 'proxy' && f.header.client === null ? reject(`PROXY header from ${f.peer} names no TCP client address; the proxy's own address is never used instead`) : dunno()),
  },
  {
    name: 'proxy.health_check',
    check: (f) => (f.header.kind === 'local' ? permit(`LOCAL header: a health check by ${f.peer}`) : dunno()),
  },
  {
    name: 'proxy.accepted',
    check: (f) => (f.header.kind === 'proxy' && f.header.client !== null ? permit(`client ${f.header.client} via proxy ${f.peer} (PROXY v${f.header.version})`) : dunno()),
  },
];

export function decideProxy(facts: ProxyFacts): Decision {
  return evaluate(rules, facts, { rule: 'proxy.default', reason: 'PROXY header outcome not recognised; default deny' });
}
