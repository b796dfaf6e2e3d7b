/*
 * `gatehouse throttle list | clear ADDRESS|NAME` and `gatehouse user show NAME`: the login throttle as an
 * operator sees it (policy/throttle.ts). They read the daemon's state files (identity/throttle-files.ts);
 * `clear` never rewrites them: it queues a request and signals the daemon (SIGHUP), which applies it.
 * With `state_store.url` the state every instance shares is in Redis: they connect to it themselves (and a
 * `clear` deletes the shared keys at once, besides queueing the request for the local counters).
 */
import net from 'node:net';
import { parseArgs } from 'node:util';
import { loadConfig, type Config } from '../config/load.js';
import { requestClear, storeFromFiles } from '../identity/throttle-files.js';
import { signalDaemon } from '../identity/lockouts.js';
import { listThrottles, storeLimitsOf, throttleSettingsOf } from '../policy/index.js';
import { addressKey, isExempt, throttleName } from '../policy/throttle.js';
import type { Lookup, UserEntry } from '../identity/source.js';
import { usageError } from './io.js';
import fs from 'node:fs';
import type { ThrottleStore } from '../policy/throttle-store.js';

export interface OpenStore {
  readonly store: ThrottleStore;
  /** when the files were saved (null: the live shared store) */
  readonly savedAt: number | null;
  /** said before the listing (the shared store could not be reached) */
  readonly note: string | null;
  close(this: void): Promise<void>;
}

/** The shared store when `state_store.url` is set and reachable, else the daemon's state files. */
export async function openThrottleStore(config: Config, now: number): Promise<OpenStore> {
  const fromFiles = async (note: string | null): Promise<OpenStore> => {
    const { store, savedAt } = await storeFromFiles(config.paths.stateDir, storeLimitsOf(config), now);
    return { store, savedAt, note, close: () => Promise.resolve() };
  };
  if (!config.state_store.url) return fromFiles(null);
  const pwFile = config.paths.stateStorePasswordFile;
  let password: string | null = null;
  try {
    password = pwFile ? fs.readFileSync(pwFile, 'utf8').trim() : null;
  } catch {
    return fromFiles(`state_store.password_file ${pwFile ?? ''} unreadable: showing this instance's saved state only`);
  }
  // loaded only when a store is set: ioredis stays out of every other CLI call's start-up
  const [{ StateStore }, { RedisThrottleStore }] = await Promise.all([import('../net/state-store.js'), import('../net/redis-throttle-store.js')]);
  const quiet = { warn: () => undefined, info: () => undefined };
  const shared = new StateStore({ ...config.state_store, password }, quiet);
  if (!(await shared.waitReady(3_000)) || !shared.client) {
    await shared.close();
    return fromFiles("the shared state store is unreachable: showing this instance's saved state only");
  }
  const store = new RedisThrottleStore(shared.client, { maxFamiliarPerUser: config.auth.familiar.max_per_user, familiarTtlMs: Math.max(1, config.auth.familiar.days) * 86_400_000 });
  return { store, savedAt: null, note: null, close: () => shared.close() };
}

const USAGE = 'usage: gatehouse throttle list | throttle clear ADDRESS|NAME';

const iso = (t: number) => new Date(t).toISOString();

function describe(e: { kind: string; address: string | null; name: string | null }): string {
  if (e.kind === 'pair') return `name ${e.name ?? '?'} from ${e.address ?? '?'}`;
  if (e.kind === 'user') return `name ${e.name ?? '?'} from unfamiliar addresses`;
  return `address ${e.address ?? '?'}`;
}

export async function printThrottles(config: Config, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const now = Date.now();
  const { store, savedAt, note, close } = await openThrottleStore(config, now);
  const list = await listThrottles(store, now).finally(close);
  if (note) out.write(`(${note})\n`);
  if (list.length === 0) out.write('nothing is throttled\n');
  for (const e of list) out.write(`${describe(e)}\t${e.count} failures\tuntil ${iso(e.until)} (${Math.ceil((e.until - now) / 1000)} s)\n`);
  if (savedAt !== null) out.write(`(state as saved by the daemon at ${iso(savedAt)})\n`);
  return 0;
}

/** Queue a clear of every counter and throttle of an address or a name; tell the daemon. */
export async function clearThrottle(config: Config, who: string, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const bare = who.replace(/^\[|\]$/g, '').replace(/^([0-9a-fA-F:]+:[0-9a-fA-F:]*)\/64$/, '$1'); // an IPv6 /64 as listed
  const isAddress = net.isIP(bare) !== 0;
  const target = isAddress ? { address: addressKey(bare) } : { name: throttleName(who) };
  const label = isAddress ? `address ${target.address}` : `name ${target.name}`;
  const now = Date.now();
  const { store, note, close } = await openThrottleStore(config, now);
  let was: number;
  try {
    const before = (await listThrottles(store, now)).length;
    await store.clear(target);
    was = before - (await listThrottles(store, now)).length;
  } finally {
    await close();
  }
  if (note) out.write(`(${note})\n`);
  requestClear(config.paths.stateDir, target, now);
  const signalled = signalDaemon(config.paths.stateDir);
  out.write(
    `${label}: ${was > 0 ? `${was} throttle(s) cleared` : 'was not throttled; its counters are reset'}` +
      `${signalled ? ' (running gatehouse told)' : ' (no running gatehouse; applied at its next start)'}\n`,
  );
  return 0;
}

export async function throttleCommand(args: string[], configFile: string | undefined): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, allowPositionals: true, strict: true });
  const [sub, who, ...extra] = positionals;
  const config = loadConfig(values.config ?? configFile);
  if (sub === 'list' && !who) return printThrottles(config);
  if (sub === 'clear' && who && extra.length === 0) return clearThrottle(config, who);
  throw usageError(USAGE);
}

/** The FTP home a login as this entry would get, or why it would be refused. */
function ftpHomeOf(config: Config, e: UserEntry): string {
  const mode = config.ftp.isolation;
  if (mode === 'shared') return `${config.paths.ftpSharedRoot} (ftp.isolation shared)`;
  if (mode === 'directory' && e.home !== undefined) {
    return e.home === null ? `none — refused: ${e.homeProblem ?? 'missing'} (FTP login refused)` : `${e.home} (from the directory)`;
  }
  return `${config.paths.ftpHomes}/${e.name}`;
}

/**
 * `gatehouse user show NAME`: which source answers for the name (identity.sources order) and what it says —
 * source, DN, groups, FTP home — then its familiar addresses with last-seen times and the throttles on the
 * name (shown for unknown names too: guessed names get throttled). Exit 1 when no source knows the name, 75
 * when one could not be asked.
 */
export async function showUser(config: Config, name: string, who: Lookup, out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const now = Date.now();
  const { store, note, close } = await openThrottleStore(config, now);
  try {
    if (note) out.write(`(${note})\n`);
    await writeUser(config, name, who, store, now, out);
  } finally {
    await close();
  }
  return who.kind === 'found' ? 0 : who.kind === 'unknown' ? 1 : 75;
}

async function writeUser(config: Config, name: string, who: Lookup, store: ThrottleStore, now: number, out: NodeJS.WritableStream): Promise<void> {
  const settings = throttleSettingsOf(config);
  const key = throttleName(name);
  if (who.kind === 'found') {
    const e = who.entry;
    out.write(`user ${name}\tgroups: ${e.groups.join(',') || '-'}\n`);
    out.write(`source:  ${e.source === 'local' ? `local (${config.paths.usersFile})` : `directory (${config.directory?.url ?? '?'})`}\n`);
    if (e.dn) out.write(`dn:      ${e.dn}\n`);
    out.write(`ftp home: ${ftpHomeOf(config, e)}\n`);
  } else if (who.kind === 'unknown') {
    out.write(`user ${name} (not in ${config.identity.sources.map((x) => (x === 'local' ? 'the users file' : 'the directory')).join(' nor ')})\n`);
  } else {
    out.write(`user ${name} (could not be looked up: ${who.reason})\n`);
  }
  const familiar = (await store.familiar(key)).filter((f) => settings.familiarMs > 0 && now - f.lastSeen < settings.familiarMs);
  out.write(settings.familiarMs === 0 ? 'familiar addresses: off (auth.familiar.days: 0)\n' : `familiar addresses (login within ${config.auth.familiar.days} days): ${familiar.length === 0 ? 'none' : ''}\n`);
  for (const f of familiar) out.write(`  ${f.address}\tlast login ${iso(f.lastSeen)}${isExempt(settings, f.address.replace('::/64', '::')) ? '\t(in auth.throttle_exempt)' : ''}\n`);
  const mine = (await listThrottles(store, now)).filter((e) => e.name === key);
  out.write(`throttles: ${mine.length === 0 ? 'none' : ''}\n`);
  for (const e of mine) out.write(`  ${describe(e)}\t${e.count} failures\tuntil ${iso(e.until)}\n`);
}
