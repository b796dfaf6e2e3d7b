/*
 * NAME
 *   policy/relay — who may send mail where (SMTP MAIL FROM and RCPT TO).
 *
 * THREAT
 *   Open relay. Mail to a local domain may come from any allowed client; mail to anywhere else needs an
 *   authenticated identity or a trusted network (default: loopback only). There is no rule that permits
 *   by default: the list ends in `relay.default` (reject), as Postfix's smtpd_check_init insists.
 *
 * RULES for RCPT (first non-dunno wins)
 *   address.*                  reject   the recipient did not survive policy/address (names the trick)
 *   relay.local_domain         permit   the domain is local and the user exists
 *   relay.unknown_local_user   reject   the domain is local and no such user exists
 *   relay.authenticated        permit   the client authenticated
 *   relay.trusted_networks     permit   the client address is in smtp.trusted_networks
 *   relay.default              reject   relay access denied
 *
 * RULES for MAIL FROM
 *   address.*                  reject   unparsable sender (the null sender <> is allowed)
 *   mail.local_sender          reject   an outside, unauthenticated client claims a local-domain sender
 *   mail.sender                permit
 */
import { evaluate, permit, reject, dunno, type Rule } from './decision.js';
import { normalizeAddress, type NormalizedAddress } from './address.js';
import { cidrMatches, type CidrRule } from './network.js';
import type { Decision, Identity } from './types.js';

export interface RelayScope {
  readonly localDomains: ReadonlySet<string>;
  readonly trustedNetworks: readonly CidrRule[];
  /** Does a local mailbox exist for this (lower-cased) local part? */
  readonly localUserExists: (local: string) => boolean;
}

export interface RelayFacts {
  readonly ip: string;
  readonly identity: Identity;
  readonly recipient: NormalizedAddress;
}

export function isLocalDomain(scope: RelayScope, domain: string): boolean {
  return scope.localDomains.has(domain.toLowerCase());
}

const relayRuleCache = new WeakMap<RelayScope, Rule<RelayFacts>[]>();

export function relayRules(scope: RelayScope): Rule<RelayFacts>[] {
  let rules = relayRuleCache.get(scope);
  if (!rules) {
    rules = buildRelayRules(scope);
    relayRuleCache.set(scope, rules);
  }
  return rules;
}

function buildRelayRules(scope: RelayScope): Rule<RelayFacts>[] {
  return [
    {
      name: 'relay.local_domain',
      check: (f) => {
        if (!isLocalDomain(scope, f.recipient.domain)) return dunno(`${f.recipient.domain} is not a local domain`);
        const user = f.recipient.local.toLowerCase();
        return scope.localUserExists(user)
          ? permit(`${f.recipient.domain} is local and mailbox ${user} exists`)
          : reject(`no mailbox ${user} in local domain ${f.recipient.domain}`);
      },
    },
    {
      name: 'relay.authenticated',
      check: (f) => (f.identity.kind === 'user' ? permit(`client authenticated as ${f.identity.name}`) : dunno('client is not authenticated')),
    },
    {
      name: 'relay.trusted_networks',
      check: (f) => {
        const hit = scope.trustedNetworks.find((r) => cidrMatches(r, f.ip));
        return hit ? permit(`${f.ip} is in smtp.trusted_networks (${hit.cidr})`) : dunno(`${f.ip} is not in smtp.trusted_networks`);
      },
    },
  ];
}

export type RecipientDecision = { readonly decision: Decision; readonly address: NormalizedAddress | null };

/**
 * RFC 5321 §4.5.1: `RCPT TO:<Postmaster>` without a domain must be accepted. It means the postmaster of this
 * server: the `postmaster` mailbox of the first local domain (and is refused, like any unknown local user, when
 * there is no such mailbox or no local domain).
 */
function postmasterOf(scope: RelayScope, raw: string): string {
  if (raw.toLowerCase() !== 'postmaster') return raw;
  const first = [...scope.localDomains][0];
  return first ? `postmaster@${first}` : raw;
}

export function decideRecipient(scope: RelayScope, ip: string, identity: Identity, rawRecipient: string): RecipientDecision {
  const parsed = normalizeAddress(postmasterOf(scope, rawRecipient));
  if (!parsed.ok) {
    return { decision: evaluate([{ name: parsed.trick, check: () => reject(parsed.reason) }], null, { rule: 'relay.default', reason: '' }), address: null };
  }
  const facts: RelayFacts = { ip, identity, recipient: parsed.address };
  const decision = evaluate(relayRules(scope), facts, { rule: 'relay.default', reason: `relay access denied: ${parsed.address.domain} is not local and the client is neither authenticated nor trusted` });
  // The rule for an unknown local user is named apart so listeners can answer 550 5.1.1 rather than 554 5.7.1.
  if (!decision.allow && decision.rule === 'relay.local_domain') {
    return { decision: evaluate([{ name: 'relay.unknown_local_user', check: () => reject(decision.reason) }], null, { rule: 'relay.default', reason: '' }), address: parsed.address };
  }
  return { decision, address: parsed.address };
}

export function decideSender(scope: RelayScope, ip: string, identity: Identity, rawSender: string): RecipientDecision {
  if (rawSender === '') {
    return { decision: evaluate([{ name: 'mail.null_sender', check: () => permit('null sender (bounce)') }], null, { rule: 'mail.default', reason: '' }), address: null };
  }
  const parsed = normalizeAddress(rawSender);
  if (!parsed.ok) {
    return { decision: evaluate([{ name: parsed.trick, check: () => reject(parsed.reason) }], null, { rule: 'mail.default', reason: '' }), address: null };
  }
  const trusted = scope.trustedNetworks.some((r) => cidrMatches(r, ip));
  const rules: Rule<null>[] = [
    {
      name: 'mail.local_sender',
      check: () =>
        isLocalDomain(scope, parsed.address.domain) && identity.kind !== 'user' && !trusted
          ? reject(`sender claims local domain ${parsed.address.domain} but the client is neither authenticated nor trusted`)
          : dunno(),
    },
    { name: 'mail.sender', check: () => permit(`sender ${parsed.address.address} accepted`) },
  ];
  return { decision: evaluate(rules, null, { rule: 'mail.default', reason: 'sender refused' }), address: parsed.address };
}
