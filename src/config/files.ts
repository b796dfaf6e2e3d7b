/*
 * Files and folders on disk, judged as `postfix check` and INN's `inncheck` judge theirs: the config, the
 * users file, the TLS key (configured or self-signed), the password files and the state folder. A secret
 * (users file, key, password file) that others may read or write refuses to start; every other loose mode
 * or foreign owner is a warning. Files that do not exist yet are not judged (they are created 0600/0700).
 */
import fs from 'node:fs';
import path from 'node:path';
import { EMBEDDED, type Config } from './load.js';
import type { Warning } from './lint.js';

export interface FileReport {
  readonly errors: string[];
  readonly warnings: Warning[];
}

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, '0')}`;
}

export function checkFiles(c: Config): FileReport {
  const errors: string[] = [];
  const warnings: Warning[] = [];
  const uid = typeof process.getuid === 'function' ? process.getuid() : -1;
  const stat = (p: string): fs.Stats | null => {
    try {
      return fs.statSync(p);
    } catch {
      return null;
    }
  };
  const owner = (key: string, p: string, st: fs.Stats) => {
    if (uid >= 0 && st.uid !== uid && st.uid !== 0) {
      warnings.push({ id: 'files.owner', key, value: `${p} owned by uid ${st.uid}`, default: `owned by uid ${uid} (the user gatehouse runs as) or root`, risk: 'another account owns it and can change it' });
    }
  };

  const secret = (key: string, p: string | null, what: string) => {
    if (p === null) return;
    const st = stat(p);
    if (!st) return;
    const mode = st.mode & 0o777;
    if (mode & 0o006) {
      errors.push(`${c.source}: ${key}: ${p} is mode ${octal(mode)}: ${what} ${mode & 0o004 ? 'readable' : 'writable'} by every account on the machine; run chmod 600 ${p}`);
    } else if (mode & 0o060) {
      warnings.push({ id: 'files.secret_group', key, value: `${p} mode ${octal(mode)}`, default: '0600', risk: `${what} is open to the file's group` });
    }
    owner(key, p, st);
  };
  secret('users_file', c.paths.usersFile, 'the users file (password hashes) is');
  const key = c.paths.tlsKey ?? path.join(c.paths.tlsDir, 'selfsigned.key');
  secret(c.paths.tlsKey ? 'tls.key' : 'tls.key (self-signed)', key, 'the TLS private key is');
  secret('smtp.relay.smarthost.password_file', c.paths.smarthostPasswordFile, 'the smarthost password is');
  secret('metrics.password_file', c.paths.metricsPasswordFile, 'the status page password is');

  if (c.source !== EMBEDDED) {
    const st = stat(c.source);
    if (st) {
      const mode = st.mode & 0o777;
      if (mode & 0o022) {
        warnings.push({ id: 'files.config_writable', key: 'config file', value: `${c.source} mode ${octal(mode)}`, default: '0644 or stricter', risk: `writable by ${mode & 0o002 ? 'every account on the machine' : "the file's group"}: whoever can write it decides who relays and who logs in` });
      }
      owner('config file', c.source, st);
    }
  }

  // The state folder itself may be 0755 (a fresh clone's var/ is); nobody else may write it, and the folders
  // that hold mail, uploads, articles, keys and logs (created 0700) must stay closed.
  const st = stat(c.paths.stateDir);
  if (st) {
    const mode = st.mode & 0o777;
    if (mode & 0o022) {
      warnings.push({ id: 'files.state_dir_open', key: 'state_dir', value: `${c.paths.stateDir} mode ${octal(mode)}`, default: '0700 (0755 at most)', risk: `the state folder is writable by ${mode & 0o002 ? 'every account on the machine' : "the folder's group"}: they can plant or replace queued mail, keys and users` });
    }
    owner('state_dir', c.paths.stateDir, st);
    const parts: Array<[string, string]> = [
      ['spool', c.paths.spoolDir],
      ['mail', c.paths.mailDir],
      ['tls', c.paths.tlsDir],
      ['log', c.paths.logDir],
      ['news', c.paths.newsDir],
      ['ftp.homes', c.paths.ftpHomes],
    ];
    for (const [name, dir] of parts) {
      const sub = stat(dir);
      if (!sub || !sub.isDirectory()) continue;
      const m = sub.mode & 0o777;
      if (m & 0o077) {
        warnings.push({ id: 'files.state_part_open', key: name === 'ftp.homes' ? 'ftp.homes' : 'state_dir', value: `${dir} mode ${octal(m)}`, default: '0700', risk: `open to ${m & 0o007 ? 'every account on the machine' : "the folder's group"}: ${name === 'ftp.homes' ? 'users\' uploads' : name === 'tls' ? 'the TLS key' : name === 'log' ? 'client addresses and user names' : 'mail and articles'} readable by others` });
      }
    }
  }
  return { errors, warnings };
}
