/*
 * The identity sources of a config, in the order of `identity.sources`.
 */
import type { Config } from '../config/load.js';
import type { Logger } from '../net/log.js';
import { directoryFromConfig } from './directory.js';
import { LocalSource } from './local.js';
import { IdentitySources, type IdentitySource } from './source.js';
import type { UserStore } from './users.js';

export { IdentitySources } from './source.js';
export type { IdentitySource, Lookup, UserEntry, Verify } from './source.js';

/** Throws GatehouseError (config) when the directory's password file or CA cannot be used. */
export function buildIdentitySources(config: Config, users: UserStore, log: Logger, directoryHomes?: boolean): IdentitySources {
  const list: IdentitySource[] = [];
  for (const name of config.identity.sources) {
    if (name === 'local') list.push(new LocalSource(users));
    else {
      const d = directoryFromConfig(config, log, directoryHomes);
      if (d) list.push(d);
    }
  }
  return new IdentitySources(list);
}
