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
/** RFC 4954 §6: a throttled login (the password was not checked), whether or not the user exists; or the user directory could not be asked (auth.unavailable). */
export const AUTH_TEMPORARY = reply(454, '4.7.0 Temporary authentication failure, try again later');
export const AUTH_IN_TRANSACTION = reply(503, '5.5.1 Error: AUTH not permitted during a mail transaction');
export const AUTH_NEEDS_TLS = reply(530, '5.7.0 Must issue a STARTTLS command first');
export const TOO_MANY_RECIPIENTS = reply(452, '4.5.3 Error: too many recipients');
/** The hard error limit (`smtp.limits.max_errors`), in Postfix's words (smtpd_hard_error_limit). */
export const tooManyErrors = (host: string): SmtpReply => reply(421, `4.7.0 ${host} Error: too many errors`);
export const LINE_TOO_SLOW = reply(421, '4.4.2 Error: line not completed in time, closing connection');
export const QUEUE_FAILED = reply(451, '4.3.0 Error: queue file write error, try again later');
export const INTERNAL = reply(451, '4.3.0 Error: internal error, try again later');
export const VRFY_DISABLED = reply(502, '5.5.1 VRFY command is disabled');
export const SHUTTING_DOWN = reply(421, '4.3.2 Service shutting down, closing transmission channel');

/** What the reply rewriter knows about the session when the library sends a reply of its own. */
export interface ReplyFacts {
  /** our host name (greeting, HELO/EHLO, 421s) */
  readonly host: string;
  /** smtp-server's context argument to `send` (e.g. MAIL_FROM_OK, RCPT_TO_OK, SENDER_SYNTAX_ERROR) */
  readonly context?: string | false | undefined;
  readonly secure: boolean;
  /** AUTH may be used now (after STARTTLS unless plaintext AUTH is allowed, and not yet authenticated) */
  readonly authUsable: boolean;
  readonly message_bytes: number;
}

/** A reply as it goes on the wire: the text carries its enhanced code where one belongs (never 220/250-EHLO/3xx). */
export interface WireReply {
  readonly code: number;
  readonly text: string | string[];
}

type Rule = readonly [code: number, text: RegExp, to: (f: ReplyFacts, m: RegExpExecArray) => WireReply];
const own = (r: SmtpReply): WireReply => r;
const SYNTAX_PARAM = reply(501, '5.5.4 Error: bad MAIL/RCPT parameter');
const COMMAND_NOT_RECOGNIZED = reply(500, '5.5.2 Error: command not recognized');

/**
 * Every reply text smtp-server 3.21 can send by itself (its `send(...)` calls in dist/esm/smtp-connection.js
 * and sasl.js), mapped to ours: so no scanner can tell the library or its version from the wire, and every
 * 4xx/5xx has an enhanced status code. Texts that start with an enhanced code are ours already and pass.
 * test/smtp/replies-own.test.ts greps the library for its reply strings and fails on any this table misses.
 */
const LIBRARY_REPLIES: readonly Rule[] = [
  // greeting, HELO/EHLO (multi-line EHLO is handled by ownReply), STARTTLS, QUIT, NOOP, RSET, HELP, VRFY
  [220, /^\S+ (?:ESMTP|LMTP)(?: .*)?$/, (f) => ({ code: 220, text: `${f.host} ESMTP` })],
  [220, /^Ready to start TLS$/, () => ({ code: 220, text: '2.0.0 Ready to start TLS' })],
  [221, /^Bye$/, () => ({ code: 221, text: '2.0.0 Bye' })],
  [250, /^\S+ Nice to meet you, .*$/, (f) => ({ code: 250, text: f.host })],
  [250, /^(?:OK|Flushed)$/, () => ({ code: 250, text: '2.0.0 Ok' })],
  [250, /^Accepted$/, (f) => ({ code: 250, text: f.context === 'RCPT_TO_OK' ? '2.1.5 Ok' : '2.1.0 Ok' })],
  [250, /^OK: message (?:accepted|queued)$/, () => ({ code: 250, text: '2.6.0 Ok' })],
  [214, /^See https?:.*$/, (f) => ({ code: 214, text: `2.0.0 Commands: HELO EHLO${f.secure ? '' : ' STARTTLS'}${f.authUsable ? ' AUTH' : ''} MAIL RCPT DATA RSET NOOP QUIT` })],
  [252, /^Try to send something/, () => own(VRFY_DISABLED)],
  [501, /^Error: Syntax: VRFY address$/, () => own(VRFY_DISABLED)],
  [354, /^End data with <CR><LF>\.<CR><LF>$/, () => ({ code: 354, text: 'End data with <CR><LF>.<CR><LF>' })],
  [334, /^.*$/, (_f, m) => ({ code: 334, text: m[0] })], // SASL challenges (base64), not prose
  [235, /^Authentication successful$/, () => ({ code: 235, text: '2.7.0 Authentication successful' })],
  // session ends (a 421 closes the connection, so a 421 stays a 421)
  [421, /^Error: too many un(?:recognized|authenticated) commands$/, (f) => own(tooManyErrors(f.host))],
  [421, /^Timeout - closing connection$/, (f) => ({ code: 421, text: `4.4.2 ${f.host} Error: timeout exceeded` })],
  [421, /^Server shutting down$/, () => own(SHUTTING_DOWN)],
  [421, /^\S+ You talk too soon$/, (f) => ({ code: 421, text: `4.7.0 ${f.host} Error: talked before the greeting` })],
  [421, /^\S+ Too many connected clients/, () => ({ code: 421, text: '4.7.0 Error: too many connections, try again later' })],
  [421, /^HTTP requests not allowed$/, () => ({ code: 421, text: '4.7.0 Error: HTTP requests are not SMTP' })],
  [421, /^Error: Command line too long$/, () => ({ code: 421, text: '4.7.0 Error: command line too long' })],
  [421, /^Error: /, () => ({ code: 421, text: '4.3.0 Error: protocol error, closing connection' })],
  // command errors
  [500, /^Error: command not recognized$/, () => own(COMMAND_NOT_RECOGNIZED)],
  [500, /^(?:You are no wizard!|Mere mortals must not mutter that mantra|Error: Invoking shell is not allowed.*|Can not kill Mom|Error: \S+ not allowed in LMTP server)$/, () => own(COMMAND_NOT_RECOGNIZED)],
  [200, /^Please pass, oh mighty wizard$/, () => own(COMMAND_NOT_RECOGNIZED)],
  [503, /^Error: send (?:HELO\/EHLO|LHLO) first$/, () => ({ code: 503, text: '5.5.1 Error: send HELO/EHLO first' })],
  [451, /^Error: internal server error$/, () => own(INTERNAL)],
  [501, /^Error: syntax: (?:EHLO|LHLO) hostname$/, () => ({ code: 501, text: '5.5.4 Syntax: EHLO hostname' })],
  [501, /^Error: Syntax: HELO hostname$/, () => ({ code: 501, text: '5.5.4 Syntax: HELO hostname' })],
  [501, /^Error: Bad hostname syntax$/, () => ({ code: 501, text: '5.5.2 Error: invalid HELO/EHLO host name' })],
  [501, /^Error: syntax: STARTTLS$/, () => ({ code: 501, text: '5.5.4 Syntax: STARTTLS' })],
  [503, /^Error: TLS already active$/, () => ({ code: 503, text: '5.5.1 Error: TLS already active' })],
  // AUTH (texts only; the decisions are made in onAuth)
  [538, /^Error: Must issue a STARTTLS command first$/, () => own(AUTH_NEEDS_TLS)],
  [530, /^Error: authentication Required$/, () => ({ code: 530, text: '5.7.0 Authentication required' })],
  [503, /^Error: No identity changes permitted$/, () => ({ code: 503, text: '5.5.1 Error: already authenticated' })],
  [504, /^Error: Unrecognized authentication type$/, () => ({ code: 504, text: '5.5.4 Error: unsupported authentication mechanism' })],
  [501, /^Error: syntax: AUTH \S+(?: token)?$/, () => ({ code: 501, text: '5.5.4 Syntax: AUTH mechanism [initial-response]' })],
  [501, /^Authentication aborted$/, () => ({ code: 501, text: '5.7.0 Authentication aborted' })],
  [501, /^Error: (?:invalid userdata|missing username)$/, () => ({ code: 501, text: '5.5.2 Error: cannot decode the authentication response' })],
  [535, /^(?:Error: Authentication credentials invalid|Error: Username and Password not accepted|Authentication not implemented)$/, () => own(AUTH_FAILED)],
  // the mail transaction
  [501, /^Error: Bad sender address syntax$/, () => ({ code: 501, text: '5.1.7 Bad sender address syntax' })],
  [501, /^Error: Bad recipient address syntax$/, () => ({ code: 501, text: '5.1.3 Bad recipient address syntax' })],
  [503, /^Error: nested MAIL command$/, () => ({ code: 503, text: '5.5.1 Error: nested MAIL command' })],
  [503, /^Error: need MAIL command$/, () => ({ code: 503, text: '5.5.1 Error: need MAIL command' })],
  [503, /^Error: need RCPT command$/, () => ({ code: 503, text: '5.5.1 Error: need RCPT command' })],
  [501, /^Error: duplicate \S+ parameter$/, () => ({ code: 501, text: '5.5.4 Error: duplicate MAIL/RCPT parameter' })],
  [501, /^Error: \S+ parameter requires a value$/, () => own(SYNTAX_PARAM)],
  [501, /^Error: Bad message size syntax$/, () => ({ code: 501, text: '5.5.4 Error: bad SIZE parameter' })],
  [501, /^Invalid BODY parameter value/, () => ({ code: 501, text: '5.5.4 Error: BODY must be 7BIT or 8BITMIME' })],
  [501, /^(?:Invalid \S+ parameter|Error: NOTIFY|Error: Bad ORCPT parameter syntax|Error: Bad command parameter syntax)/, () => own(SYNTAX_PARAM)],
  [530, /^REQUIRETLS not permitted on non-TLS connections$/, () => ({ code: 530, text: '5.7.0 Must issue a STARTTLS command first' })],
  [552, /^Error: message exceeds fixed maximum message size \S*$/, (f) => own(guardReply('too_big', f.message_bytes))],
  [452, /^Error: too many recipients$/, () => own(TOO_MANY_RECIPIENTS)],
  // XCLIENT/XFORWARD (always disabled; mapped in case)
  [550, /^Error: Not allowed$/, () => ({ code: 550, text: '5.7.1 Error: not allowed' })],
  [503, /^Error: Mail transaction in progress$/, () => ({ code: 503, text: '5.5.1 Error: mail transaction in progress' })],
];

const ENHANCED_TEXT = /^[245]\.\d{1,3}\.\d{1,3} /;

/**
 * The reply to put on the wire for what smtp-server wanted to send: ours unchanged (it starts with an enhanced
 * code), a library text through LIBRARY_REPLIES, and anything unknown (a library upgrade added a text) as a
 * generic reply of the same class with `unmapped` set, so the listener logs it and the reply test fails.
 */
export function ownReply(code: number, data: string | string[] | null | undefined, f: ReplyFacts): WireReply & { unmapped?: string } {
  if (Array.isArray(data)) {
    // EHLO: the first line is our host name, the rest are ESMTP keywords (protocol, not prose)
    return { code, text: [f.host, ...data.slice(1)] };
  }
  const text = data ?? '';
  if (ENHANCED_TEXT.test(text)) return { code, text };
  for (const [c, re, to] of LIBRARY_REPLIES) {
    if (c !== code) continue;
    const m = re.exec(text);
    if (m) return to(f, m);
  }
  const generic =
    code === 421 ? `4.3.0 ${f.host} Error: closing connection`
    : code >= 500 ? '5.5.0 Error: command refused'
    : code >= 400 ? '4.3.0 Error: try again later'
    : code >= 300 ? 'Continue'
    : '2.0.0 Ok';
  return { code, text: generic, unmapped: text };
}

/** An Error carrying the reply, as smtp-server's callbacks expect. */
export function smtpError(r: SmtpReply): Error & { responseCode: number } {
  return Object.assign(new Error(r.text), { responseCode: r.code });
}
