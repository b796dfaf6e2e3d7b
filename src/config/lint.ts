/*
 * The lint of `gatehouse check`: one warning per setting weaker than the secure default, naming the key and
 * the risk in plain words. A config that passes with no warning is as strict as the embedded defaults (or
 * stricter). Each warning has a stable id so tests and `audit` can refer to it.
 */
import net from 'node:net';
import { normalizeIp } from '../policy/network.js';
import type { Config } from './load.js';
import { parseListen } from './load.js';

export interface Warning {
  readonly id: string;
  readonly key: string;
  readonly risk: string;
}

function isLoopback(host: string): boolean {
  const ip = normalizeIp(host);
  if (!ip) return false;
  if (net.isIP(ip) === 6) return ip === '::1';
  return ip.startsWith('127.');
}

function prefixOf(cidr: string): { ip: string; bits: number; v6: boolean } {
  const [addr, bits] = cidr.split('/') as [string, string | undefined];
  const ip = normalizeIp(addr) ?? addr;
  const v6 = net.isIP(ip) === 6;
  const max = v6 ? 128 : 32;
  const b = bits === undefined ? max : Number(bits);
  return { ip, bits: v6 === (net.isIP(addr) === 6) ? b : Math.max(0, b - 96), v6 };
}

/** Is a CIDR inside loopback (127.0.0.0/8 or ::1/128)? */
function cidrIsLoopback(cidr: string): boolean {
  const p = prefixOf(cidr);
  if (p.v6) return p.ip === '::1' && p.bits === 128;
  return p.ip.startsWith('127.') && p.bits >= 8;
}

/** Host bits set (e.g. 10.0.0.1/8): usually a typo for another network. Checked for IPv4, where typos happen. */
function hasHostBits(cidr: string): boolean {
  const p = prefixOf(cidr);
  if (p.v6 || p.bits === 32) return false;
  const n = p.ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
  const mask = p.bits === 0 ? 0 : (0xffffffff << (32 - p.bits)) >>> 0;
  return ((n & ~mask) >>> 0) !== 0;
}

export function lintConfig(c: Config): Warning[] {
  const w: Warning[] = [];
  const add = (id: string, key: string, risk: string) => w.push({ id, key, risk });

  const listens: Array<[string, string | null, boolean]> = [
    ['smtp.listen', c.smtp.listen, c.smtp.enabled],
    ['smtp.implicit_tls_listen', c.smtp.implicit_tls_listen, c.smtp.enabled],
    ['ftp.listen', c.ftp.listen, c.ftp.enabled],
    ['nntp.listen', c.nntp.listen, c.nntp.enabled],
    ['nntp.implicit_tls_listen', c.nntp.implicit_tls_listen, c.nntp.enabled],
    ['metrics.listen', c.metrics.listen, true],
  ];
  for (const [key, value, enabled] of listens) {
    if (!value || !enabled) continue;
    const { host } = parseListen(value);
    if (!isLoopback(host)) {
      add('listen.public', key, `listens on ${host}, not loopback: reachable from the network${key === 'metrics.listen' ? ' (metrics and status page are meant for loopback only)' : ''}`);
    }
  }

  c.access.deny.concat(c.access.allow, c.smtp.trusted_networks).forEach((cidr) => {
    if (hasHostBits(cidr)) add('cidr.host_bits', 'access / smtp.trusted_networks', `${cidr} has host bits set; did you mean a different network?`);
  });

  if (c.smtp.enabled) {
    if (!c.smtp.auth_requires_tls) add('smtp.plaintext_auth', 'smtp.auth_requires_tls', 'SMTP AUTH allowed without TLS: passwords cross the network in plain text');
    for (const n of c.smtp.trusted_networks) {
      if (!cidrIsLoopback(n)) add('smtp.trusted_wide', 'smtp.trusted_networks', `${n} may relay without a password; trusted_networks wider than loopback lets every host there send mail anywhere`);
    }
    const sh = c.smtp.relay.smarthost;
    if (sh && sh.tls === 'none') add('smtp.smarthost_plain', 'smtp.relay.smarthost.tls', `relay smarthost ${sh.host} without TLS: outgoing mail${sh.user ? ' and the relay password' : ''} travel unencrypted`);
    if (sh && sh.tls !== 'none' && !sh.verify_cert) add('smtp.smarthost_noverify', 'smtp.relay.smarthost.verify_cert', `smarthost certificate not verified: anyone on the path can pose as ${sh.host}`);
    if (c.smtp.limits.message_bytes > 52_428_800) add('smtp.big_messages', 'smtp.limits.message_bytes', 'messages over 50 MiB accepted: easy to fill the spool');
  }

  if (c.ftp.enabled) {
    if (!c.ftp.tls_required) add('ftp.plaintext_auth', 'ftp.tls_required', 'FTP logins allowed without TLS: passwords and files cross the network in plain text');
    if (c.ftp.active_mode) add('ftp.active_mode', 'ftp.active_mode', 'active-mode FTP (PORT/EPRT) on: the server opens connections outwards (limited to the client address, ports >= 1024)');
    if (c.ftp.anonymous.enabled) {
      add('ftp.anonymous', 'ftp.anonymous.enabled', `anonymous FTP on: anyone who can connect can read ${c.ftp.anonymous.root}`);
      if (c.ftp.anonymous.write === 'dropbox') add('ftp.anonymous_write', 'ftp.anonymous.write', 'anonymous FTP write access (drop box): anyone can upload files and fill the disk');
    }
    c.ftp.shares.forEach((s, i) => {
      for (const [who, rights] of Object.entries(s.rights)) {
        if (who === 'anonymous' && rights.length > 0) add('ftp.share_anonymous', `ftp.shares.${i}.rights.anonymous`, `share ${s.path} grants ${rights.join(',')} to anonymous users`);
        if (rights.includes('write') && (rights.includes('read') || rights.includes('list')) && (who === 'authenticated' || who.startsWith('group:'))) {
          add('ftp.share_open_dropbox', `ftp.shares.${i}.rights.${who}`, `share ${s.path} gives ${who} both write and read/list: uploaders see each other's files (not a drop box)`);
        }
      }
    });
  }

  const d = c.directory;
  if (d && c.identity.sources.includes('directory')) {
    if (d.url.startsWith('ldap://') && !d.starttls) add('directory.insecure_plaintext', 'directory.insecure_plaintext', `directory ${d.url} without TLS: the service password and every user's password cross the network in clear`);
    if (d.cache_s > 300) add('directory.long_cache', 'directory.cache_s', `directory entries cached ${d.cache_s} s: a user removed from a group or disabled keeps its groups and home that long (passwords are always checked)`);
    if (c.identity.sources.indexOf('directory') < c.identity.sources.indexOf('local')) add('identity.directory_first', 'identity.sources', 'the directory is asked before the users file: a directory entry with the name of a local user takes that name over');
  }
  if (c.ftp.enabled) {
    c.ftp.allowed_roots.forEach((r, i) => {
      const st = c.paths.stateDir;
      if (r === st || st.startsWith(`${r}/`) || r.startsWith(`${st}/`)) add('ftp.allowed_roots_state', `ftp.allowed_roots.${i}`, `${r} overlaps the state folder ${st}: a directory entry could point a home at the spool, the logs or other users' homes`);
    });
    if (c.ftp.isolation === 'shared') {
      for (const [who, rights] of Object.entries(c.ftp.shared.rights)) {
        const writes = rights.filter((r) => r === 'write' || r === 'delete' || r === 'rename');
        if (writes.length > 0 && (who === 'authenticated' || who.startsWith('group:'))) {
          add('ftp.shared_write', `ftp.shared.rights.${who}`, `ftp.isolation shared gives ${who} ${writes.join(',')} on the one shared root: each of them can change or delete the others' files`);
        }
      }
    }
  }

  if (c.nntp.enabled) {
    if (!c.nntp.auth_requires_tls) add('nntp.plaintext_auth', 'nntp.auth_requires_tls', 'NNTP AUTHINFO allowed without TLS: passwords cross the network in plain text');
    c.nntp.groups.forEach((g, i) => {
      if (g.read.includes('anonymous')) add('nntp.anonymous_read', `nntp.groups.${i}.read`, `${g.name} is readable without logging in`);
      if (g.post.includes('anonymous')) add('nntp.anonymous_post', `nntp.groups.${i}.post`, `${g.name} accepts posts without logging in: spam and forged authors`);
    });
  }

  if (c.auth.bcrypt_cost < 12) add('auth.weak_cost', 'auth.bcrypt_cost', `bcrypt cost ${c.auth.bcrypt_cost} is below 12: stolen hashes are cheaper to crack`);
  const l = c.auth.lockout;
  if (l.failures > 10) add('auth.lax_lockout', 'auth.lockout.failures', `${l.failures} failures before lockout: more room for password guessing`);
  if (l.lock_s < 300) add('auth.short_lockout', 'auth.lockout.lock_s', `lockout of only ${l.lock_s} s: guessing slows down very little`);
  if (c.tls.cert === null && (!isLoopbackOnly(c))) add('tls.self_signed_public', 'tls.cert', 'self-signed certificate on a non-loopback listener: clients cannot tell the server from an impostor');
  return w;
}

function isLoopbackOnly(c: Config): boolean {
  return [c.smtp.listen, c.smtp.implicit_tls_listen, c.ftp.listen, c.nntp.listen, c.nntp.implicit_tls_listen]
    .filter((v): v is string => v !== null)
    .every((v) => isLoopback(parseListen(v).host));
}
