import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { checkFiles } from '../config/files.js';
import { loadConfig } from '../config/load.js';
import { checkPrincipals, formatWarning, lintConfig } from '../config/lint.js';
import { GatehouseError } from '../errors.js';
import { UserStore } from '../identity/users.js';
import { directoryFromConfig } from '../identity/directory.js';
import { readJournal } from '../ftp/isolation.js';

/**
 * `gatehouse check`: exit 0 clean, 1 with warnings, 2 invalid (or a file that refuses to start). Warnings come
 * from the direction-of-safety table (config/safety.ts), the address coverage of trusted networks, and the
 * modes and owners of files on disk (config/files.ts); each names the key, the value, the default and the risk.
 */
export async function checkCommand(args: string[], configFile: string | undefined): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, quiet: { type: 'boolean', short: 'q' } }, strict: true });
  let config;
  let notes: string[] = [];
  let fileWarnings;
  try {
    config = loadConfig(values.config ?? configFile);
    const users = UserStore.load(config.paths.usersFile, config.auth.bcrypt_cost);
    // the directory's password file (mode 0600 or stricter) and CA file, as start reads them; no connection
    if (config.directory && config.identity.sources.includes('directory')) directoryFromConfig(config, (await import('../net/log.js')).silentLog());
    const principals = checkPrincipals(config, config.source, users.list());
    const files = checkFiles(config);
    const errors = [...principals.errors, ...files.errors];
    if (errors.length > 0) throw new GatehouseError('GH_ERR_CONFIG', `invalid configuration\n${errors.join('\n')}`);
    notes = principals.notes;
    fileWarnings = files.warnings;
    if (config.paths.tlsCert && config.paths.tlsKey) {
      for (const f of [config.paths.tlsCert, config.paths.tlsKey]) {
        try {
          fs.accessSync(f, fs.constants.R_OK);
        } catch {
          throw new GatehouseError('GH_ERR_TLS', `${config.source}: tls: cannot read ${f}`);
        }
      }
      // Validate the pair the same way start does (match of key and certificate).
      const { loadTls } = await import('../net/tls.js');
      await loadTls(config);
    }
  } catch (err) {
    if (err instanceof GatehouseError) {
      process.stderr.write(`gatehouse check: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const warnings = [...lintConfig(config), ...fileWarnings];
  const recorded = readJournal(config.paths.stateDir);
  if (recorded && recorded.to !== config.ftp.isolation) {
    warnings.push({ id: 'ftp.isolation_mismatch', key: 'ftp.isolation', value: config.ftp.isolation, default: recorded.to, risk: `the homes were last moved for ${recorded.to} (${recorded.state}), but the config says ${config.ftp.isolation}: FTP logins get 421 until they agree; change modes with \`gatehouse ftp isolation MODE\`` });
  }
  for (const w of warnings) process.stdout.write(`warning: ${formatWarning(w)}\n`);
  for (const n of notes) process.stdout.write(`note: ${n}\n`);
  if (!values.quiet) {
    process.stdout.write(
      warnings.length === 0
        ? `ok: ${config.source} is valid and no setting is weaker than the defaults\n`
        : `${config.source}: valid, with ${warnings.length} setting(s) weaker than the defaults\n`,
    );
  }
  return warnings.length === 0 ? 0 : 1;
}
