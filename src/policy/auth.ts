/*
 * NAME
 *   policy/auth — may this client send a password at all, and what is the verdict once it was compared?
 *
 * THREAT
 *   Password sniffing (plaintext AUTH) and user enumeration. Passwords are only taken over TLS unless a
 *   listener is explicitly configured otherwise. Unknown user and wrong password are one outcome
 *   (`auth.bad_credentials`) with one reason, so the reply cannot tell them apart. Online guessing is the
 *   business of policy/throttle.ts, whose rules run after these and before the password is compared.
 *
 * RULES before the password is checked (first non-dunno wins)
 *   auth.tls_required   reject   the session is not encrypted and the service requires TLS for passwords
 *   auth.precheck       permit   go on (to the throttle rules, then the password)
 *
 * RULES after (decideAuthResult)
 *   auth.password          permit   the identity source accepted the password
 *   auth.bad_credentials   reject   unknown user or wrong password (one outcome)
 *   auth.unavailable       reject   the identity source that knows names (a directory) could not be asked:
 *                                   a temporary refusal, not counted as a failure (an outage must not throttle
 *                                   everyone); listeners answer with their temporary code
 *
 * RULES for SMTP AUTH PLAIN's authorization identity (RFC 4616 authzid), before the password is compared
 *   auth.authzid     reject   an authorization identity is given and differs from the user: acting for another
 *                             user (a proxy login) is never granted; counted as a failed login
 *   auth.authzid_ok  permit   none given, or the user's own
 */
import { evaluate, permit, reject, dunno, allow, deny, type Rule } from './decision.js';
import type { Decision } from './types.js';

export interface AuthFacts {
  readonly tls: boolean;
  readonly requiresTls: boolean;
}

export function decideAuthPrecheck(f: AuthFacts): Decision {
  return evaluate(
    [
      {
        name: 'auth.tls_required',
        check: (x: AuthFacts) => (x.requiresTls && !x.tls ? reject('passwords are only accepted over TLS (use STARTTLS / AUTH TLS first)') : dunno(x.tls ? 'session is encrypted' : 'TLS not required by config')),
      },
      { name: 'auth.precheck', check: () => permit('credentials may be checked') },
    ],
    f,
    { rule: 'auth.default', reason: 'authentication refused' },
  );
}

/** The verdict after the password was compared. Unknown user and wrong password share rule and reason. */
export function decideAuthResult(precheck: Decision, verified: boolean | 'unavailable', user: string): Decision {
  if (verified === 'unavailable') return deny('auth.unavailable', 'the user directory cannot be reached; try again later', precheck.trace);
  return verified
    ? allow('auth.password', `authenticated as ${user}`, precheck.trace)
    : deny('auth.bad_credentials', 'user name or password not accepted', precheck.trace);
}

export interface AuthzidFacts {
  /** the SASL mechanism; only PLAIN carries an authorization identity */
  readonly mechanism: string;
  /** PLAIN's authentication identity (the user) */
  readonly authcid?: string | undefined;
  /** PLAIN's authorization identity, empty or absent when the client acts for itself */
  readonly authzid?: string | undefined;
}

const AUTHZID_RULES: readonly Rule<AuthzidFacts>[] = [
  {
    name: 'auth.authzid',
    check: (x) => (x.mechanism === 'PLAIN' && x.authzid && x.authcid && x.authzid !== x.authcid ? reject('PLAIN authorization identity differs from the user; proxy login is not allowed') : dunno()),
  },
  {
    name: 'auth.authzid_ok',
    check: (x) => permit(x.mechanism !== 'PLAIN' ? `${x.mechanism} carries no authorization identity` : x.authzid ? 'the authorization identity is the user' : 'no authorization identity'),
  },
];

/** May this login go on to the password check as far as the authorization identity goes? */
export function decideAuthzid(f: AuthzidFacts): Decision {
  return evaluate(AUTHZID_RULES, f, { rule: 'auth.authzid', reason: 'authorization identity refused' });
}
