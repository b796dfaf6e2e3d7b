/*
 * NAME
 *   policy/address — the only way a client-supplied mail address becomes a NormalizedAddress.
 *
 * THREAT
 *   Open relay through address tricks: the `%`-hack (user%remote@local), bang paths (remote!user@local),
 *   source routes (@a,@b:user@c), quoted local parts hiding `@ % !`, IP literals, trailing dots, two `@`,
 *   control characters, non-ASCII look-alikes. A relay that "understands" these forwards mail it was
 *   never meant to. Gatehouse does not understand them: anything ambiguous is refused before the relay
 *   decision, with a reason naming the trick.
 */

declare const normalizedBrand: unique symbol;

export interface NormalizedAddress {
  /** local part as given (case kept, as RFC 5321 requires of relays) */
  readonly local: string;
  /** domain, lower-cased */
  readonly domain: string;
  /** `local@domain` */
  readonly address: string;
  readonly [normalizedBrand]: true;
}

export type AddressResult =
  | { readonly ok: true; readonly address: NormalizedAddress }
  | { readonly ok: false; readonly trick: string; readonly reason: string };

const LOCAL_ATOM = /^[A-Za-z0-9!#$&'*+/=?^_`{|}~.-]+$/;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

function refuse(trick: string, reason: string): AddressResult {
  return { ok: false, trick, reason };
}

/** Parse an envelope address (without angle brackets). The null sender is handled by the caller. */
export function normalizeAddress(input: string): AddressResult {
  const raw = input;
  if (raw.length === 0) return refuse('address.empty', 'empty address');
  if (raw.length > 254) return refuse('address.too_long', 'address longer than 254 characters');
  if (/[\x00-\x20\x7f]/.test(raw)) return refuse('address.control', 'address contains spaces or control characters');
  if (/[^\x21-\x7e]/.test(raw)) return refuse('address.non_ascii', 'non-ASCII address (SMTPUTF8 is not offered)');
  if (raw.startsWith('@')) return refuse('address.source_route', 'source routes (@host:user@domain) are not accepted');
  if (raw.includes(':') && !raw.includes('[')) return refuse('address.source_route', 'source routes (@host:user@domain) are not accepted');
  if (raw.startsWith('"')) {
    const close = raw.lastIndexOf('"');
    const quoted = raw.slice(1, close);
    if (close <= 0) return refuse('address.quoted', 'unbalanced quoted local part');
    if (/[@%!\\"]/.test(quoted)) return refuse('address.quoted', 'quoted local part hides @, %, ! or an escape');
    return refuse('address.quoted', 'quoted local parts are not accepted');
  }
  const at = raw.lastIndexOf('@');
  if (at <= 0) return refuse('address.no_domain', 'address has no domain part (user@domain expected)');
  const local = raw.slice(0, at);
  let domain = raw.slice(at + 1);
  if (local.includes('@')) return refuse('address.multiple_at', 'more than one @ in the address');
  if (local.includes('%')) return refuse('address.percent_hack', 'the %-hack (user%host@domain) is not accepted');
  if (local.includes('!')) return refuse('address.bang_path', 'bang paths (host!user) are not accepted');
  if (local.length > 64) return refuse('address.local_too_long', 'local part longer than 64 characters');
  if (!LOCAL_ATOM.test(local) || local.startsWith('.') || local.endsWith('.') || local.includes('..')) {
    return refuse('address.local_syntax', 'local part is not a plain dot-atom');
  }
  if (domain.startsWith('[')) return refuse('address.ip_literal', 'IP-literal domains ([192.0.2.1]) are not accepted');
  if (domain.endsWith('.')) return refuse('address.trailing_dot', 'domain ends with a dot');
  domain = domain.toLowerCase();
  const labels = domain.split('.');
  if (domain.length === 0 || domain.length > 253 || !labels.every((l) => LABEL.test(l))) {
    return refuse('address.domain_syntax', 'domain is not a valid host name');
  }
  if (labels.every((l) => /^\d+$/.test(l))) return refuse('address.ip_literal', 'numeric domain that looks like an IP address');
  const address = { local, domain, address: `${local}@${domain}` } as unknown as NormalizedAddress;
  return { ok: true, address: Object.freeze(address) };
}
