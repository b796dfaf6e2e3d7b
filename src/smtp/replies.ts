/*
 * Policy decision → SMTP reply. The text starts with the enhanced status code (RFC 3463); the listener
 * sends it verbatim. Reasons from the policy core name the rule, never a password or an internal path.
 */
import type { Decision } from '../policy/index.js';
import type { GuardFault } from './data-guard.js';

export interface SmtpReply {
  readonly code: number;
  /** `X.Y.Z text` */
  readonly text: string;
}

const reply = (code: number, text: string): SmtpReply => ({ code, text });

export function connectReply(d: Decision): SmtpReply {
  if (d.rule.startsWith('limits.')) return reply(421, `4.7.0 Error: too many connections, try again later`);
  return reply(554, '5.7.1 Error: access denied');
}

export function senderReply(d: Decision): SmtpReply {
  if (d.rule.startsWith('address.')) return reply(553, `5.1.3 Sender address rejected: ${d.reason}`);
  if (d.rule === 'mail.local_sender') return reply(553, '5.7.1 Sender address rejected: not logged in');
  return reply(550, '5.7.1 Sender address rejected');
}

export function recipientReply(d: Decision): SmtpReply {
  if (d.rule === 'relay.unknown_local_user') return reply(550, '5.1.1 Recipient address rejected: User unknown in local recipient table');
  if (d.rule.startsWith('address.')) return reply(553, `5.1.3 Recipient address rejected: ${d.reason}`);
  return reply(554, '5.7.1 Relay access denied');
}

/** 555 for a MAIL/RCPT parameter that was not announced; the name is printable and short (it comes from the client). */
export function unsupportedParameterReply(key: string): SmtpReply {
  return reply(555, `5.5.4 Unsupported option: ${key.replace(/[^\x21-\x7e]/g, '?').slice(0, 32)}`);
}

export function guardReply(fault: GuardFault, maxBytes: number): SmtpReply {
  switch (fault) {
    case 'bare_lf':
      return reply(550, '5.6.0 Message refused: bare <LF> received; lines must end with <CR><LF>');
    case 'bare_cr':
      return reply(550, '5.6.0 Message refused: bare <CR> received; lines must end with <CR><LF>');
    case 'nul':
      return reply(550, '5.6.0 Message refused: NUL byte in message');
    case 'line_too_long':
      return reply(550, '5.6.0 Message refused: line longer than 998 octets');
    case 'too_big':
      return reply(552, `5.3.4 Error: message exceeds fixed maximum message size ${maxBytes}`);
  }
}

export const AUTH_FAILED = reply(535, '5.7.8 Error: authentication failed');
export const AUTH_IN_TRANSACTION = reply(503, '5.5.1 Error: AUTH not permitted during a mail transaction');
/** RFC 4954 §6: the user directory could not be asked (auth.unavailable) */
export const AUTH_TEMPORARY = reply(454, '4.7.0 Temporary authentication failure');
export const AUTH_NEEDS_TLS = reply(530, '5.7.0 Must issue a STARTTLS command first');
export const TOO_MANY_RECIPIENTS = reply(452, '4.5.3 Error: too many recipients');
export const TOO_MANY_ERRORS = reply(421, '4.7.0 Error: too many errors');
export const LINE_TOO_SLOW = reply(421, '4.4.2 Error: line not completed in time, closing connection');
export const QUEUE_FAILED = reply(451, '4.3.0 Error: queue file write error, try again later');
export const INTERNAL = reply(451, '4.3.0 Error: internal error, try again later');
export const SHUTTING_DOWN = reply(421, '4.3.2 Service shutting down, closing transmission channel');

/** An Error carrying the reply, as smtp-server's callbacks expect. */
export function smtpError(r: SmtpReply): Error & { responseCode: number } {
  return Object.assign(new Error(r.text), { responseCode: r.code });
}
