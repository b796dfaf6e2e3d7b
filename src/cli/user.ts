/*
 * `gatehouse user …`: the users file and the lockouts. One entry per subcommand (its usage, its options, what it
 * runs), so a new subcommand is one more entry. Every change is a locked read-modify-write of the file
 * (identity/users.ts `update`, identity/lockouts.ts `updateLockouts`); passwords are hashed before the lock is
 * taken. After a change a running gatehouse is told to reload (SIGHUP through the pid file).
 */
import type { ParseArgsConfig } from 'node:util';
import { loadConfig, type Config } from '../config/load.js';
import { UserStore } from '../identity/users.js';
import { signalDaemon } from '../identity/lockouts.js';
import { clearThrottle, showUser } from './throttle.js';
import { parseCommandArgs, readStdin, usageError } from './io.js';
import { buildIdentitySources } from '../identity/index.js';
import { silentLog } from '../net/log.js';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

interface Context {
  readonly config: Config;
  readonly store: UserStore;
  readonly name: string;
  readonly values: Values;
  /** ' (running gatehouse reloaded)' when a daemon was signalled, else '' */
  notify(): string;
}

interface Subcommand {
  readonly usage: string;
  readonly options: Options;
  /** does it take a NAME? */
  readonly name: boolean;
  run(ctx: Context): Promise<number>;
}

const CONFIG: Options = { config: { type: 'string', short: 'c' } };
const PASSWORD: Options = { 'password-stdin': { type: 'boolean' } };

function groupList(v: Values[string]): string[] {
  return typeof v === 'string' ? v.split(',').map((g) => g.trim()).filter(Boolean) : [];
}

async function password(ctx: Context, sub: string): Promise<string> {
  if (!ctx.values['password-stdin']) throw usageError(`user ${sub} needs --password-stdin (the password is read from standard input, never from the command line)\n${usage()}`);
  return readStdin();
}

export const USER_SUBCOMMANDS: Record<string, Subcommand> = {
  add: {
    usage: 'user add NAME [--groups a,b] --password-stdin',
    options: { ...PASSWORD, groups: { type: 'string' } },
    name: true,
    async run(ctx) {
      const groups = groupList(ctx.values.groups);
      await ctx.store.add(ctx.name, await password(ctx, 'add'), groups);
      process.stdout.write(`user ${ctx.name} added${groups.length ? ` (groups: ${groups.join(', ')})` : ''} to ${ctx.config.paths.usersFile}${ctx.notify()}\n`);
      return 0;
    },
  },
  passwd: {
    usage: 'user passwd NAME --password-stdin',
    options: PASSWORD,
    name: true,
    async run(ctx) {
      await ctx.store.passwd(ctx.name, await password(ctx, 'passwd'));
      process.stdout.write(`password of ${ctx.name} changed${ctx.notify()}\n`);
      return 0;
    },
  },
  groups: {
    usage: 'user groups NAME (--set a,b | --add a,b | --remove a,b)',
    options: { set: { type: 'string' }, add: { type: 'string' }, remove: { type: 'string' } },
    name: true,
    async run(ctx) {
      const { set, add, remove } = ctx.values;
      if (set === undefined && add === undefined && remove === undefined) throw usageError(`user groups needs --set, --add or --remove\n${usage()}`);
      const groups = await ctx.store.setGroups(ctx.name, { ...(set !== undefined && { set: groupList(set) }), add: groupList(add), remove: groupList(remove) });
      process.stdout.write(`groups of ${ctx.name}: ${groups.join(', ') || '-'}${ctx.notify()}\n`);
      return 0;
    },
  },
  del: {
    usage: 'user del NAME',
    options: {},
    name: true,
    async run(ctx) {
      await ctx.store.remove(ctx.name);
      process.stdout.write(`user ${ctx.name} removed (their files and mail are kept)${ctx.notify()}\n`);
      return 0;
    },
  },
  list: {
    usage: 'user list',
    options: {},
    name: false,
    run(ctx) {
      const users = ctx.store.list();
      if (users.length === 0) process.stdout.write(`no users in ${ctx.config.paths.usersFile}\n`);
      for (const u of users) process.stdout.write(`${u.name}\tgroups: ${u.groups.join(',') || '-'}\n`);
      return Promise.resolve(0);
    },
  },
  show: {
    usage: 'user show NAME',
    options: {},
    name: true,
    async run(ctx) {
      const r = await buildIdentitySources(ctx.config, ctx.store, silentLog()).lookup(ctx.name);
      if (r.kind === 'unavailable') process.stderr.write(`gatehouse: ${r.reason}\n`);
      return showUser(ctx.config, ctx.name, r);
    },
  },
  unlock: {
    usage: 'user unlock NAME|ADDRESS',
    options: {},
    name: true,
    run(ctx) {
      // kept from before login throttling: the same as `gatehouse throttle clear NAME|ADDRESS`
      return clearThrottle(ctx.config, ctx.name);
    },
  },
};

export function usage(): string {
  return `usage: ${Object.values(USER_SUBCOMMANDS)
    .map((s) => `gatehouse user ${s.usage.slice('user '.length)}`)
    .join('\n       ')}`;
}

export async function userCommand(args: string[], configFile: string | undefined): Promise<number> {
  const subName = args[0];
  const sub = subName === undefined || subName.startsWith('-') ? undefined : USER_SUBCOMMANDS[subName];
  if (!sub) {
    const why = subName === undefined ? 'user needs a subcommand' : subName.startsWith('-') ? `user needs a subcommand before ${subName}` : `unknown user subcommand ${JSON.stringify(subName)}`;
    throw usageError(`${why}\n${usage()}`);
  }
  const { values, positionals } = parseCommandArgs({ args: args.slice(1), options: { ...CONFIG, ...sub.options }, allowPositionals: true }, `usage: gatehouse ${sub.usage}`);
  const want = sub.name ? 1 : 0;
  if (positionals.length !== want) {
    throw usageError(`${positionals.length < want ? `user ${subName} needs a NAME` : `unexpected argument ${JSON.stringify(positionals[want])}`}\nusage: gatehouse ${sub.usage}`);
  }
  const config = loadConfig((values.config as string | undefined) ?? configFile);
  const store = UserStore.load(config.paths.usersFile, config.auth.bcrypt_cost);
  const ctx: Context = {
    config,
    store,
    name: positionals[0] ?? '',
    values,
    notify: () => (signalDaemon(config.paths.stateDir) ? ' (running gatehouse reloaded)' : ''),
  };
  return sub.run(ctx);
}
