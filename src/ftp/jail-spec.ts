/*
 * The jail description of a config (homes, anonymous root, shares, isolation mode): one definition for the
 * FTP listener and `gatehouse explain`.
 */
import type { Config } from '../config/load.js';
import type { JailSpec } from '../policy/paths.js';

export function jailSpecOf(config: Config): JailSpec {
  return {
    homes: config.paths.ftpHomes,
    anonRoot: config.paths.ftpAnonRoot,
    anonWrite: config.ftp.anonymous.write,
    shares: config.ftp.shares.map((s) => ({ path: s.path, dir: config.paths.shares.get(s.path)!, rights: s.rights })),
    isolation: config.ftp.isolation,
    sharedRoot: config.paths.ftpSharedRoot,
    sharedRights: config.ftp.shared.rights,
  };
}
