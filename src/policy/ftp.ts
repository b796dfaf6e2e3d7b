/*
 * NAME
 *   policy/ftp — the FTP-specific questions that are not about paths: anonymous login, active-mode targets, the
 *   control connection's input, SITE, and the protection level of data connections.
 *
 * THREAT
 *   Anonymous access an operator never asked for; the FTP bounce (CVE-2020-15152 class): a PORT/EPRT that
 *   points the server's data connection at a third host, or at a privileged port of the client's own host
 *   (e.g. its SMTP server). ftp-srv's own fix compares the address only, and lexically; here both sides are
 *   canonicalised (policy/network normalizeIp) and privileged ports are refused as well.
 *
 * RULES for anonymous login
 *   anonymous.disabled   reject   ftp.anonymous.enabled is false (the default)
 *   anonymous.enabled    permit
 *
 * RULES for PORT / EPRT (first non-dunno wins)
 *   ftp.active_mode       reject   active mode is off (ftp.active_mode: false, the default) or EPSV ALL was sent
 *   ftp.port_syntax       reject   the target is not a valid address and port
 *   ftp.port_foreign      reject   the target address is not the control connection's own (FTP bounce)
 *   ftp.port_privileged   reject   the target port is below 1024
 *   ftp.port_ok           permit
 *
 * RULES for a login while `gatehouse ftp isolation` moves homes (before the password is checked)
 *   ftp.isolation_switch   reject   the config names a mode this server has not reloaded into yet
 *   ftp.isolation_settled  permit
 *
 * RULES for the control connection's input (asked as each chunk arrives; a refusal ends the session)
 *   ftp.line_length     reject   a command line (complete or still arriving) is longer than maxLine bytes
 *   ftp.pipelining      reject   more than maxQueued complete commands wait to be answered
 *   ftp.input_ok        permit
 *
 * RULES for SITE
 *   ftp.site            reject   no SITE command is offered (ftp-srv's SITE CHMOD sets any mode bits)
 *
 * RULES for PROT (RFC 4217 §9; after PBSZ)
 *   ftp.prot_private       permit   P
 *   ftp.prot_clear_allowed permit   C, and ftp.tls_required is false
 *   ftp.prot_clear         reject   C while ftp.tls_required keeps data connections encrypted
 *   ftp.prot_unsupported   reject   S, E or anything else
 *
 * RULES for a data transfer of a TLS session (before its data connection is used; vsftpd's 522)
 *   ftp.prot_required      reject   ftp.tls_required, the control connection is TLS, and PROT P was not chosen
 *   ftp.data_protection_ok permit
 *
 * RULES for a connection to a session's passive data port (before anything is read from it or written to it)
 *   ftp.pasv_client     permit   it comes from the control connection's own address
 *   ftp.pasv_foreign    reject   any other address: a thief racing the client to the port (vsftpd's
 *                                pasv_promiscuous=NO)
 *
 * RULES for a TLS data connection of a PROT P session (after its handshake, before any byte of the transfer)
 *   ftp.data_tls_resumed      permit   its TLS session was resumed from the control connection's (each
 *                                      session has its own ticket keys, so nothing else can be resumed)
 *   ftp.data_tls_reuse_off    permit   not resumed, but ftp.tls.require_session_reuse is false (clients that
 *                                      cannot resume, e.g. Python's ftplib)
 *   ftp.data_tls_not_resumed  reject   a fresh TLS session: a same-address thief that connected to the passive
 *                                      port (vsftpd's require_ssl_reuse)
 */
import { evaluate, permit, reject, dunno, type Rule } from './decision.js';
import { normalizeIp } from './network.js';
import type { Decision } from './types.js';

export function decideAnonymousLogin(enabled: boolean): Decision {
  return evaluate(
    [{ name: 'anonymous.enabled', check: () => (enabled ? permit('anonymous FTP is enabled (ftp.anonymous.enabled)') : dunno()) }],
    null,
    { rule: 'anonymous.disabled', reason: 'anonymous FTP is off (ftp.anonymous.enabled: false)' },
  );
}

export function decideIsolationSwitch(pending: boolean): Decision {
  return evaluate(
    [{ name: 'ftp.isolation_settled', check: () => (pending ? dunno() : permit('no isolation change in progress')) }],
    null,
    { rule: 'ftp.isolation_switch', reason: 'FTP isolation mode change in progress; logins wait for the reload' },
  );
}

export interface ActiveFacts {
  readonly activeMode: boolean;
  readonly epsvAll: boolean;
  readonly clientIp: string;
  readonly host: string | null;
  readonly port: number | null;
}

export function decideActiveTarget(f: ActiveFacts): Decision {
  const target = normalizeIp(f.host);
  const client = normalizeIp(f.clientIp);
  return evaluate(
    [
      {
        name: 'ftp.active_mode',
        check: () => (!f.activeMode ? reject('active mode (PORT/EPRT) is off: use PASV or EPSV') : f.epsvAll ? reject('EPSV ALL was sent: only EPSV is accepted') : dunno('active mode is on')),
      },
      {
        name: 'ftp.port_syntax',
        check: () => (target === null || f.port === null || !Number.isInteger(f.port) || f.port < 1 || f.port > 65535 ? reject('not a valid address and port') : dunno()),
      },
      {
        name: 'ftp.port_foreign',
        check: () => (target !== client ? reject(`data connection to ${target} requested, but the client is ${client} (FTP bounce)`) : dunno('target is the client itself')),
      },
      { name: 'ftp.port_privileged', check: () => (f.port! < 1024 ? reject(`port ${f.port} is privileged (below 1024)`) : dunno()) },
      { name: 'ftp.port_ok', check: () => permit(`active data connection to the client itself, port ${f.port}`) },
    ],
    null,
    { rule: 'ftp.active_mode', reason: 'active mode refused' },
  );
}

export interface DataTlsFacts {
  /** ftp.tls.require_session_reuse */
  readonly requireReuse: boolean;
  /** the data connection's TLS session was resumed (isSessionReused) */
  readonly resumed: boolean;
}

export function decideDataTls(f: DataTlsFacts): Decision {
  return evaluate(
    [
      { name: 'ftp.data_tls_resumed', check: () => (f.resumed ? permit("TLS session resumed from the control connection's") : dunno()) },
      { name: 'ftp.data_tls_reuse_off', check: () => (!f.requireReuse ? permit('TLS session not resumed; allowed because ftp.tls.require_session_reuse is false') : dunno()) },
      { name: 'ftp.data_tls_not_resumed', check: () => reject("data connection's TLS session is not resumed from the control connection's (not this session's client)") },
    ],
    null,
    { rule: 'ftp.data_tls_not_resumed', reason: 'data connection refused' },
  );
}

export interface ControlInputFacts {
  /** the longest command line seen in this chunk, or still arriving, in bytes */
  readonly longestLine: number;
  readonly maxLine: number;
  /** complete commands waiting to be answered */
  readonly queued: number;
  readonly maxQueued: number;
}

const CONTROL_INPUT_RULES: readonly Rule<ControlInputFacts>[] = [
  { name: 'ftp.line_length', check: (f) => (f.longestLine > f.maxLine ? reject(`command line longer than ${f.maxLine} bytes`) : dunno()) },
  { name: 'ftp.pipelining', check: (f) => (f.queued > f.maxQueued ? reject(`more than ${f.maxQueued} commands queued`) : dunno()) },
  { name: 'ftp.input_ok', check: () => permit('command input within limits') },
];

export function decideControlInput(f: ControlInputFacts): Decision {
  return evaluate(CONTROL_INPUT_RULES, f, { rule: 'ftp.line_length', reason: 'command input refused' });
}

const SITE_RULES: readonly Rule<null>[] = [{ name: 'ftp.site', check: () => reject('SITE commands are not supported') }];

export function decideSite(): Decision {
  return evaluate(SITE_RULES, null, { rule: 'ftp.site', reason: 'SITE refused' });
}

export interface ProtFacts {
  /** the PROT argument, upper-cased */
  readonly level: string;
  /** ftp.tls_required */
  readonly tlsRequired: boolean;
}

const PROT_RULES: readonly Rule<ProtFacts>[] = [
  { name: 'ftp.prot_private', check: (f) => (f.level === 'P' ? permit('data connections encrypted (PROT P)') : dunno()) },
  { name: 'ftp.prot_clear_allowed', check: (f) => (f.level === 'C' && !f.tlsRequired ? permit('clear data connections allowed: ftp.tls_required is false') : dunno()) },
  { name: 'ftp.prot_clear', check: (f) => (f.level === 'C' ? reject('PROT C refused: tls_required keeps data connections encrypted') : dunno()) },
  { name: 'ftp.prot_unsupported', check: (f) => reject(`protection level ${JSON.stringify(f.level.slice(0, 8))} is not offered (only P, or C when TLS is optional)`) },
];

export function decideProt(f: ProtFacts): Decision {
  return evaluate(PROT_RULES, f, { rule: 'ftp.prot_unsupported', reason: 'PROT refused' });
}

export interface DataProtectionFacts {
  /** ftp.tls_required */
  readonly tlsRequired: boolean;
  /** the control connection is TLS */
  readonly secure: boolean;
  /** PROT P was chosen */
  readonly protP: boolean;
}

const DATA_PROTECTION_RULES: readonly Rule<DataProtectionFacts>[] = [
  { name: 'ftp.prot_required', check: (f) => (f.tlsRequired && f.secure && !f.protP ? reject('data transfer before PROT P') : dunno()) },
  { name: 'ftp.data_protection_ok', check: () => permit('data connection protection as required') },
];

export function decideDataProtection(f: DataProtectionFacts): Decision {
  return evaluate(DATA_PROTECTION_RULES, f, { rule: 'ftp.prot_required', reason: 'data transfer refused' });
}

export interface PassiveSourceFacts {
  /** the control connection's client address */
  readonly clientIp: string;
  /** the address the data connection comes from */
  readonly from: string;
}

const PASSIVE_SOURCE_RULES: readonly Rule<PassiveSourceFacts>[] = [
  {
    name: 'ftp.pasv_client',
    check: (f) => {
      const from = normalizeIp(f.from);
      return from !== null && from === normalizeIp(f.clientIp) ? permit("data connection from the control connection's address") : dunno();
    },
  },
  { name: 'ftp.pasv_foreign', check: (f) => reject(`data connection from ${f.from}, not the control connection's address`) },
];

export function decidePassiveSource(f: PassiveSourceFacts): Decision {
  return evaluate(PASSIVE_SOURCE_RULES, f, { rule: 'ftp.pasv_foreign', reason: 'data connection refused' });
}
