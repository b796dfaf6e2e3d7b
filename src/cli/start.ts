import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { checkFiles } from '../config/files.js';
import { loadConfig } from '../config/load.js';
import { GatehouseError } from '../errors.js';
import { Gatehouse } from '../gatehouse.js';
import type { Service } from '../policy/index.js';

const NAMES: Record<Service, string> = { smtp: 'SMTP', ftp: 'FTP ', nntp: 'NNTP' };

export async function startCommand(args: string[], configFile: string | undefined): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, quiet: { type: 'boolean' } }, strict: true });
  // Files first, like `postfix check`: a users file or key that others can read refuses to start.
  const config = loadConfig(values.config ?? configFile);
  const files = checkFiles(config);
  if (files.errors.length > 0) throw new GatehouseError('GH_ERR_CONFIG', `refusing to start:\n${files.errors.join('\n')}`, 2);
  // --quiet turns stdout logging off; without it, the config's log.stdout decides (never the command's own default).
  const gh = await Gatehouse.create({ configFile: values.config ?? configFile, ...(values.quiet ? { stdout: false } : {}) });
  await gh.start();
  const c = gh.config;
  const out: string[] = [];
  out.push(`Gatehouse ${c.hostname} is up (pid ${process.pid}: SIGHUP reloads, SIGTERM stops; config: ${c.source}; state: ${c.paths.stateDir})`);
  for (const service of ['smtp', 'ftp', 'nntp'] as const) {
    if (!c[service].enabled) {
      out.push(`  ${NAMES[service]} off`);
      continue;
    }
    const addrs = gh.addresses(service).map((a) => `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}${a.name === 'plain' ? '' : ` (${a.name.replace('_', ' ')})`}`);
    out.push(`  ${NAMES[service]} ${addrs.join(', ')}`);
  }
  if (gh.ops) out.push(`  HTTP http://${gh.ops.address.host}:${gh.ops.address.port}/ (status page, /metrics)`);
  const t = gh.runtime.tls;
  out.push(`  TLS  ${t.selfSigned ? 'self-signed certificate' : 'certificate'} ${t.certFile} (SHA-256 ${t.fingerprint256.slice(0, 23)}…)`);
  const n = gh.runtime.users.list().length;
  // in a clone (sources beside dist/) the command is `npm run gatehouse --`; installed, it is `gatehouse`
  const cmd = fs.existsSync(fileURLToPath(new URL('../../src/cli', import.meta.url))) ? 'npm run gatehouse --' : 'gatehouse';
  out.push(n === 0 ? `  No users yet. Add the first: echo 'a-long-passphrase' | ${cmd} user add alice --password-stdin` : `  ${n} user(s) in ${c.paths.usersFile}`);
  process.stderr.write(`${out.join('\n')}\n`);

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      gh.runtime.log.info({ event: 'stop', signal }, 'stopping');
      gh.stop(10_000).then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      void gh.reload();
    });
    // Started through npm (`npx gatehouse start`, `npm run gatehouse -- start`), this process is npm's grandchild:
    // npm passes SIGINT/SIGTERM only to its own child, the shell, which dies without passing them on. A server
    // whose parent went away is no longer supervised by whoever started it: it stops as on SIGTERM instead of
    // running on unseen. (`npm start` execs, so there npm is the parent and the signals arrive directly.)
    if (process.env.npm_command) {
      const parent = process.ppid;
      const watch = setInterval(() => {
        if (process.ppid === parent) return;
        clearInterval(watch);
        stop('parent exited');
      }, 500);
      watch.unref();
    }
  });
}
