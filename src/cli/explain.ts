/*
 * `gatehouse explain`: feed facts to the same policy functions the listeners call and print the decision,
 * the rule that made it, the reason, and every rule consulted on the way. No password is ever asked for:
 * `authenticate` shows what happens before the password is compared (TLS rule, login throttle).
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { UserStore } from '../identity/users.js';
import { storeFromFiles } from '../identity/throttle-files.js';
import { Policy, storeLimitsOf, ANONYMOUS, NOBODY, type Decision, type Identity, type Service } from '../policy/index.js';
import { allow, andThen, deny } from '../policy/decision.js';
import { buildJail, decidePath, locate, resolveVirtual, type PathAction } from '../policy/paths.js';
import type { Config } from '../config/load.js';
import { jailSpecOf } from '../ftp/jail-spec.js';
import { buildIdentitySources } from '../identity/index.js';
import { identityOf } from '../identity/source.js';
import { silentLog } from '../net/log.js';
import { usageError } from './io.js';

const USAGE =
  'usage: gatehouse explain --service smtp|ftp|nntp --ip ADDRESS --action ACTION [--user NAME|anonymous] [--tls] [--object X]\n' +
  '  actions: connect | authenticate | mail (object: sender) | relay, rcpt (object: recipient) | read, post (nntp; object: group)\n' +
  '           read, write, overwrite, append, list, delete, mkdir, rename (ftp; object: virtual path)\n' +
  '           active_mode (ftp; object: ADDRESS:PORT) | authenticate --user anonymous (ftp)';

export type ExplainRequest = {
  service: Service;
  ip: string;
  action: string;
  user?: string;
  tls: boolean;
  object?: string;
  /** the identity as an identity source gave it (directory users); default: the users file or no groups */
  identity?: Identity;
};

const FTP_PATH_ACTIONS: Record<string, PathAction> = {
  read: 'read',
  write: 'create',
  overwrite: 'overwrite',
  append: 'append',
  list: 'list',
  delete: 'delete',
  mkdir: 'mkdir',
  rename: 'rename_from',
};

/**
 * FTP paths, answered from the jail's rules without touching the disk: the lexical resolver and the mount
 * rights. (The listener additionally confines every path with realpath; `explain` says so in the reason.)
 */
function explainFtpPath(config: Config, identity: Identity, action: PathAction, object: string): Decision {
  const jail = buildJail(identity, jailSpecOf(config));
  if (!jail) return deny('paths.no_jail', 'not logged in: no file access at all');
  const lex = resolveVirtual('/', object);
  if (!lex.ok) return lex.decision;
  const d = decidePath(locate(jail, lex), action);
  return d.allow ? allow(d.rule, `${d.reason}; on disk the target must also resolve (realpath) inside ${locate(jail, lex).mount.dir}`, d.trace.slice(0, -1)) : d;
}

export function explain(policy: Policy, users: UserStore, req: ExplainRequest): Decision {
  const identity: Identity = req.identity ??
    (req.user === undefined || req.user === '-' ? NOBODY : req.user === 'anonymous' || req.user === 'ftp' ? ANONYMOUS : (users.identityOf(req.user) ?? { kind: 'user', name: req.user, groups: [] }));
  const connect = policy.explainConnect(req.service, req.ip);
  const need = (what: string) => {
    if (!req.object) throw usageError(`--action ${req.action} needs --object ${what}`);
    return req.object;
  };
  return andThen(connect, () => {
    const ctx = { service: req.service, ip: req.ip, identity, session: 'explain' };
    if (req.service === 'ftp') {
      if (req.action === 'authenticate' && identity.kind === 'anonymous') return policy.anonymousLogin(ctx, false);
      if (req.action === 'active_mode') {
        const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(need('ADDRESS:PORT'));
        return policy.activeTarget(ctx, m ? (m[1] ?? m[2])! : null, m ? Number(m[3]) : null, false, false);
      }
      const pathAction = FTP_PATH_ACTIONS[req.action];
      if (pathAction) return explainFtpPath(policy.currentConfig, identity, pathAction, need('PATH'));
    }
    switch (req.action) {
      case 'connect':
        return connect;
      case 'authenticate':
        return policy.authPrecheck({ service: req.service, ip: req.ip, identity, session: 'explain' }, req.user ?? '', req.tls);
      case 'mail':
        if (req.service !== 'smtp') break;
        return policy.explainSender(req.ip, identity, need('SENDER'));
      case 'relay':
      case 'rcpt':
        if (req.service !== 'smtp') break;
        return policy.explainRecipient(req.ip, identity, need('RECIPIENT'));
      case 'read':
      case 'post':
        if (req.service !== 'nntp') break;
        return policy.group({ service: 'nntp', ip: req.ip, identity, session: 'explain' }, req.action, need('GROUP'), false);
    }
    throw usageError(`no action ${JSON.stringify(req.action)} for ${req.service}\n${USAGE}`);
  });
}

/** A name the users file does not know, looked up in the other identity sources (the directory). */
async function directoryIdentity(config: Config, users: UserStore, name: string): Promise<{ identity?: Identity; note: string }> {
  const r = await buildIdentitySources(config, users, silentLog()).lookup(name);
  if (r.kind === 'found') {
    const e = r.entry;
    const home = e.home === undefined ? '' : e.home === null ? `; home refused: ${e.homeProblem ?? 'missing'}` : `; home ${e.home}`;
    return { identity: identityOf(e), note: `note: ${name} is a ${e.source} user${e.dn ? ` (${e.dn})` : ''}; groups: ${e.groups.join(', ') || '-'}${home}\n` };
  }
  if (r.kind === 'unavailable') return { note: `note: ${name} could not be looked up (${r.reason}); explained as a user with no groups\n` };
  return { note: `note: ${name} is not in ${config.identity.sources.map((x) => (x === 'local' ? config.paths.usersFile : `the directory ${config.directory?.url ?? ''}`)).join(' or ')}; explained as a user with no groups\n` };
}

/** `explain`, and for `authenticate` the login throttle's rules after the TLS rule (policy/throttle.ts; async: its state may be shared). */
export async function explainWithThrottle(policy: Policy, users: UserStore, req: ExplainRequest): Promise<{ decision: Decision; throttle: { lines: string[] } | null }> {
  const throttle = req.action === 'authenticate' && req.user && !['-', 'anonymous', 'ftp'].includes(req.user) ? await policy.explainThrottle(req.user, req.ip) : null;
  const d = explain(policy, users, req);
  return { decision: throttle && d.allow ? andThen(d, () => throttle.decision) : d, throttle };
}

export async function explainCommand(args: string[], configFile: string | undefined): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string', short: 'c' },
      service: { type: 'string' },
      ip: { type: 'string' },
      user: { type: 'string' },
      tls: { type: 'boolean', default: false },
      action: { type: 'string' },
      object: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const service = values.service;
  if (service !== 'smtp' && service !== 'ftp' && service !== 'nntp') throw usageError(USAGE);
  if (!values.ip || !values.action) throw usageError(USAGE);
  const config = loadConfig(values.config ?? configFile);
  const users = UserStore.load(config.paths.usersFile, config.auth.bcrypt_cost);
  const policy = new Policy(config, users, () => {}, Date.now, (await storeFromFiles(config.paths.stateDir, storeLimitsOf(config))).store);
  const named = values.user !== undefined && !['-', 'anonymous', 'ftp'].includes(values.user) && !users.has(values.user) ? values.user : null;
  const looked = named ? await directoryIdentity(config, users, named) : null;
  const req: ExplainRequest = {
    service,
    ip: values.ip,
    action: values.action,
    tls: values.tls,
    ...(values.user !== undefined && { user: values.user }),
    ...(values.object !== undefined && { object: values.object }),
    ...(looked?.identity && { identity: looked.identity }),
  };
  const { decision: d, throttle } = await explainWithThrottle(policy, users, req);
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ allow: d.allow, rule: d.rule, reason: d.reason, trace: d.trace, ...(throttle && { throttle: throttle.lines }) })}\n`);
  } else {
    const who = req.user ?? '-';
    if (looked) process.stdout.write(looked.note);
    process.stdout.write(`${d.allow ? 'ALLOW' : 'DENY'}  ${service} ${req.action}${req.object ? ` ${req.object}` : ''} from ${req.ip} as ${who}${req.tls ? ' over TLS' : ''}\n`);
    process.stdout.write(`  rule:   ${d.rule}\n  reason: ${d.reason}\n  rules consulted:\n`);
    for (const step of d.trace) process.stdout.write(`    ${step.outcome.padEnd(7)} ${step.rule.padEnd(28)} ${step.reason}\n`);
    if (throttle) process.stdout.write(`  login throttle:\n${throttle.lines.map((l) => `    ${l}\n`).join('')}`);
  }
  return d.allow ? 0 : 1;
}
