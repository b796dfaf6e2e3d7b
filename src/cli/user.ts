import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { UserStore } from '../identity/users.js';
import { signalDaemon } from '../identity/lockouts.js';
import { clearThrottle, showUser } from './throttle.js';
import { readStdin, usageError } from './io.js';
import { buildIdentitySources } from '../identity/index.js';
import { silentLog } from '../net/log.js';

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
      const users = store.list();
      if (users.length === 0) process.stdout.write(`no users in ${config.paths.usersFile}\n`);
      for (const u of users) process.stdout.write(`${u.name}\tgroups: ${u.groups.join(',') || '-'}\n`);
      return 0;
    }
    case 'show': {
      const n = needName();
      const r = await buildIdentitySources(config, store, silentLog()).lookup(n);
      if (r.kind === 'unavailable') process.stderr.write(`gatehouse: ${r.reason}\n`);
      return showUser(config, n, r);
    }
    case 'unlock':
      // kept from before login throttling: the same as `gatehouse throttle clear NAME|ADDRESS`
      return clearThrottle(config, needName());
    default:
      throw usageError(USAGE);
  }
}
