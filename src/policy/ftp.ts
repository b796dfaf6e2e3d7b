/*
 * NAME
 *   policy/ftp — the FTP-specific questions that are not about paths: anonymous login and active-mode targets.
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
 * RULES for a TLS data connection of a PROT P session (after its handshake, before any byte of the transfer)
 *   ftp.data_tls_resumed      permit   its TLS session was resumed from the control connection's (each
 *                                      session has its own ticket keys, so nothing else can be resumed)
 *   ftp.data_tls_reuse_off    permit   not resumed, but ftp.tls.require_session_reuse is false (clients that
 *                                      cannot resume, e.g. Python's ftplib)
 *   ftp.data_tls_not_resumed  reject   a fresh TLS session: a same-address thief that connected to the passive
 *                                      port (vsftpd's require_ssl_reuse)
 */
import { evaluate, permit, reject, dunno } from './decision.js';
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
