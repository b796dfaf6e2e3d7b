/*
 * NAME
 *   policy/smtp — the SMTP session's own checks that are not about addresses: the client that talks before the
 *   greeting, and the MAIL FROM / RCPT TO parameters it may use. (Addresses and relay: policy/relay; the
 *   recipient count and the message size: policy/limits; AUTH PLAIN's authorization identity: policy/auth.)
 *
 * THREAT
 *   Spam software that fires its commands without waiting for the greeting (Postfix's postscreen pregreet test,
 *   sendmail's greet_pause); parameters EHLO never offered, which smtp-server would otherwise take silently
 *   (a DSN NOTIFY/ORCPT or SMTPUTF8 that nothing downstream honours, RET/ENVID that leak into bounces, or an
 *   unknown keyword probing for a library's quirks). RFC 5321 §4.1.1.11: such a parameter is refused with 555.
 *
 * RULES for a command that arrives before the greeting went out (smtp.limits.greet_pause_ms > 0)
 *   smtp.pregreet      reject   the client talked before the greeting
 *   smtp.greeting_ok   permit   it waited for the greeting
 *
 * RULES for the parameters of MAIL FROM and RCPT TO (after smtp-server's own syntax checks)
 *   esmtp.parameter      reject   a parameter EHLO did not announce; the first one is named. MAIL takes SIZE=digits,
 *                                 BODY=7BIT|8BITMIME and AUTH=<mailbox> (RFC 4954, sent by clients after AUTH and
 *                                 ignored: the identity is the session's); RCPT takes none (DSN is not offered)
 *   esmtp.parameters_ok  permit
 */
import { evaluate, permit, reject, dunno, type Rule } from './decision.js';
import type { Decision } from './types.js';

export interface GreetingFacts {
  /** a command arrived while the greeting was still held back */
  readonly talkedBeforeGreeting: boolean;
  /** smtp.limits.greet_pause_ms (named in the reason) */
  readonly greetPauseMs: number;
}

const GREETING_RULES: readonly Rule<GreetingFacts>[] = [
  { name: 'smtp.pregreet', check: (f) => (f.talkedBeforeGreeting ? reject(`client talked before the greeting (greet_pause_ms ${f.greetPauseMs})`) : dunno()) },
  { name: 'smtp.greeting_ok', check: () => permit('the client waited for the greeting') },
];

/** May the session go on after its first command? */
export function decideGreeting(f: GreetingFacts): Decision {
  return evaluate(GREETING_RULES, f, { rule: 'smtp.pregreet', reason: 'session refused at the greeting' });
}

export interface ParameterFacts {
  readonly stage: 'mail' | 'rcpt';
  /** the command's parameters as smtp-server parsed them (keys upper case; a keyword without a value is true) */
  readonly params: Readonly<Record<string, string | true>> | false | undefined;
}

/** The first parameter of `f` that EHLO did not announce, or null. */
function unannounced(f: ParameterFacts): string | null {
  if (!f.params) return null;
  for (const [key, value] of Object.entries(f.params)) {
    const k = key.toUpperCase();
    if (f.stage === 'mail' && k === 'SIZE' && typeof value === 'string' && /^\d{1,20}$/.test(value)) continue;
    if (f.stage === 'mail' && k === 'BODY' && typeof value === 'string' && /^(7BIT|8BITMIME)$/i.test(value)) continue;
    if (f.stage === 'mail' && k === 'AUTH' && typeof value === 'string') continue;
    return k;
  }
  return null;
}

export interface ParameterDecision {
  readonly decision: Decision;
  /** the parameter refused (for the 555 reply), null when allowed */
  readonly parameter: string | null;
}

interface CheckedParameters {
  /** the first parameter EHLO did not announce, or null */
  readonly key: string | null;
  readonly any: boolean;
}

const PARAMETER_RULES: readonly Rule<CheckedParameters>[] = [
  { name: 'esmtp.parameter', check: (c) => (c.key !== null ? reject(`parameter ${c.key} was not announced in EHLO`) : dunno()) },
  { name: 'esmtp.parameters_ok', check: (c) => permit(c.any ? 'every parameter was announced in EHLO' : 'no parameters') },
];

/** May a MAIL FROM / RCPT TO with these parameters go on to the address checks? */
export function decideParameters(f: ParameterFacts): ParameterDecision {
  const key = unannounced(f);
  const decision = evaluate(PARAMETER_RULES, { key, any: Boolean(f.params) }, { rule: 'esmtp.parameter', reason: 'parameters refused' });
  return { decision, parameter: decision.allow ? null : (key ?? '?') };
}
