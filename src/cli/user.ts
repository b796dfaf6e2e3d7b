import net from 'node:net';
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { UserStore } from '../identity/users.js';
import { readLockouts, signalDaemon, writeLockouts } from '../identity/lockouts.js';
import { normalizeIp } from '../policy/network.js';
import { readStdin, usageError } from './io.js';
import { buildIdentitySources } from '../identity/index.js';
import { silentLog } from '../net/log.js';
import type { Config } from '../config/load.js';

/**
 * `user show NAME`: which source answers for the name (identity.sources order), and what it says — DN,
 * groups, FTP home — never a hash or a password. Exit 1 when no source knows the name, 75 when one could not
 * be asked.
 */
async function showUser(config: Config, store: UserStore, name: string): Promise<number> {
  const sources = buildIdentitySources(config, store, silentLog());
  const r = await sources.lookup(name);
  if (r.kind === 'unavailable') {
    process.stderr.write(`gatehouse: ${r.reason}\n`);
    return 75;
  }
  if (r.kind === 'unknown') {
    process.stdout.write(`no user ${name} in ${config.identity.sources.join(', then ')}\n`);
    return 1;
  }
  const e = r.entry;
  const out = [`user:    ${e.name}`, `source:  ${e.source === 'local' ? `local (${config.paths.usersFile})` : `directory (${config.directory?.url ?? '?'})`}`];
  if (e.dn) out.push(`dn:      ${e.dn}`);
  out.push(`groups:  ${e.groups.join(', ') || '-'}`);
  const mode = config.ftp.isolation;
  const home =
    mode === 'shared'
      ? `${config.paths.ftpSharedRoot} (ftp.isolation shared)`
      : mode === 'directory' && e.home !== undefined
        ? e.home === null
          ? `none — refused: ${e.homeProblem ?? 'missing'} (FTP login refused)`
          : `${e.home} (from the directory)`
        : `${config.paths.ftpHomes}/${e.name}`;
  out.push(`ftp home: ${home}`);
  const now = Date.now();
  const lock = readLockouts(config.paths.stateDir).find((l) => l.kind === 'user' && l.key === e.name && l.until > now);
  if (lock) out.push(`locked until ${new Date(lock.until).toISOString()}`);
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

const USAGE = 'usage: gatehouse user add NAME [--groups a,b] --password-stdin | passwd NAME --password-stdin | del NAME | list | show NAME | unlock NAME|ADDRESS';

export async function userCommand(args: string[], configFile: string | undefined): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { config: { type: 'string', short: 'c' }, groups: { type: 'string' }, 'password-stdin': { type: 'boolean' } },
    allowPositionals: true,
    strict: true,
  });
  const [sub, name, ...extra] = positionals;
  if (!sub || extra.length > 0) throw usageError(USAGE);
  const config = loadConfig(values.config ?? configFile);
  const store = UserStore.load(config.paths.usersFile, config.auth.bcrypt_cost);
  const needName = () => {
    if (!name) throw usageError(USAGE);
    return name;
  };
  const password = async () => {
    if (!values['password-stdin']) throw usageError(`${sub} needs --password-stdin (the password is read from standard input, never from the command line)`);
    return readStdin();
  };
  const notify = () => (signalDaemon(config.paths.stateDir) ? ' (running gatehouse reloaded)' : '');
  switch (sub) {
    case 'add': {
      const n = needName();
      const groups = values.groups ? values.groups.split(',').map((g) => g.trim()).filter(Boolean) : [];
      await store.add(n, await password(), groups);
      process.stdout.write(`user ${n} added${groups.length ? ` (groups: ${groups.join(', ')})` : ''} to ${config.paths.usersFile}${notify()}\n`);
      return 0;
    }
    case 'passwd': {
      const n = needName();
      await store.passwd(n, await password());
      process.stdout.write(`password of ${n} changed${notify()}\n`);
      return 0;
    }
    case 'del': {
      const n = needName();
      await store.remove(n);
      process.stdout.write(`user ${n} removed (their files and mail are kept)${notify()}\n`);
      return 0;
    }
    case 'list': {
      const now = Date.now();
      const locks = readLockouts(config.paths.stateDir).filter((l) => l.until > now);
      const users = store.list();
      if (users.length === 0) process.stdout.write(`no users in ${config.paths.usersFile}\n`);
      for (const u of users) {
        const lock = locks.find((l) => l.kind === 'user' && l.key === u.name);
        process.stdout.write(`${u.name}\tgroups: ${u.groups.join(',') || '-'}${lock ? `\tlocked until ${new Date(lock.until).toISOString()}` : ''}\n`);
      }
      for (const l of locks.filter((x) => x.kind === 'ip')) process.stdout.write(`address ${l.key}\tlocked until ${new Date(l.until).toISOString()}\n`);
      return 0;
    }
    case 'show':
      return showUser(config, store, needName());
    case 'unlock': {
      const n = needName();
      const ip = net.isIP(n) ? normalizeIp(n) : null;
      const key = ip ?? n.toLowerCase();
      const kind = ip ? 'ip' : 'user';
      const locks = readLockouts(config.paths.stateDir);
      const rest = locks.filter((l) => !(l.kind === kind && l.key === key));
      writeLockouts(config.paths.stateDir, rest);
      const signalled = signalDaemon(config.paths.stateDir);
      process.stdout.write(
        rest.length === locks.length
          ? `${kind === 'ip' ? 'address' : 'user'} ${key} was not locked${signalled ? ' (running gatehouse told to drop any lock)' : ''}\n`
          : `${kind === 'ip' ? 'address' : 'user'} ${key} unlocked${signalled ? ' (running gatehouse reloaded)' : ''}\n`,
      );
      return 0;
    }
    default:
      throw usageError(USAGE);
  }
}
