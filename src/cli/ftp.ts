/*
 * `gatehouse ftp isolation isolated|directory|shared [--dry-run]`: change the FTP isolation mode of an
 * installation that already has data (see src/ftp/isolation.ts). --dry-run prints what would move where and
 * who could newly reach what; without it the homes move (one rename each), the change is recorded, the
 * config's ftp.isolation is rewritten (comments kept) and a running server is told to reload.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { GatehouseError } from '../errors.js';
import { buildIdentitySources } from '../identity/index.js';
import { signalDaemon } from '../identity/lockouts.js';
import { UserStore } from '../identity/users.js';
import { applyIsolation, planIsolation, writeIsolationToConfig, type IsolationMode, type Plan } from '../ftp/isolation.js';
import { silentLog } from '../net/log.js';
import { usageError } from './io.js';

const USAGE = 'usage: gatehouse ftp isolation isolated|directory|shared [--dry-run]';

function printPlan(plan: Plan): void {
  const out = [`ftp.isolation: ${plan.from} → ${plan.to}`];
  if (plan.moves.length === 0) out.push('  nothing to move');
  for (const m of plan.moves) out.push(`  move ${m.user}: ${m.from} → ${m.to} (${m.files} file${m.files === 1 ? '' : 's'})`);
  for (const s of plan.stays) out.push(`  stays: ${s}`);
  if (plan.exposure.length === 0) out.push('  newly reachable by others: nothing (every home stays readable by its owner only)');
  for (const e of plan.exposure) out.push(`  newly reachable: ${e}`);
  for (const p of plan.problems) out.push(`  REFUSED: ${p}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

export async function ftpCommand(args: string[], configFile: string | undefined): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, 'dry-run': { type: 'boolean', default: false } }, allowPositionals: true, strict: true });
  const [sub, mode, ...extra] = positionals;
  if (sub !== 'isolation' || (mode !== 'isolated' && mode !== 'directory' && mode !== 'shared') || extra.length > 0) throw usageError(USAGE);
  const config = loadConfig(values.config ?? configFile);
  if (config.source.startsWith('<')) throw new GatehouseError('GH_ERR_CONFIG', 'no config file to record the new mode in (use --config FILE)', 2);
  const target: IsolationMode = mode;
  if (target === 'directory' && (!config.identity.sources.includes('directory') || config.ftp.allowed_roots.length === 0)) {
    throw new GatehouseError('GH_ERR_CONFIG', `${config.source}: ftp.isolation: directory needs identity.sources to include directory and ftp.allowed_roots to be set first`, 2);
  }
  const users = UserStore.load(config.paths.usersFile, config.auth.bcrypt_cost);
  const sources = buildIdentitySources(config, users, silentLog(), true);
  const plan = await planIsolation(config, target, sources);
  printPlan(plan);
  if (values['dry-run']) return plan.problems.length > 0 ? 1 : 0;
  if (plan.problems.length > 0) {
    process.stdout.write('nothing was moved\n');
    return 1;
  }
  applyIsolation(config, plan);
  writeIsolationToConfig(config.source, target);
  const signalled = signalDaemon(config.paths.stateDir);
  process.stdout.write(`moved ${plan.moves.length} home${plan.moves.length === 1 ? '' : 's'}; ftp.isolation: ${target} written to ${config.source}${signalled ? ' (running gatehouse reloaded)' : ''}\n`);
  return 0;
}
