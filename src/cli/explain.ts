/*
 * `gatehouse explain`: feed facts to the same policy functions the listeners call and print the decision,
 * the rule that made it, the reason, and every rule consulted on the way. No password is ever asked for:
 * `authenticate` shows what happens before the password is compared (TLS rule, lockouts).
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { UserStore } from '../identity/users.js';
import { readLockouts } from '../identity/lockouts.js';
import { Policy, ANONYMOUS, NOBODY, type Decision, type Identity, type Service } from '../policy/index.js';
import { andThen } from '../policy/decision.js';
import { usageError } from './io.js';

const USAGE =
  'usage: gatehouse explain --service smtp|ftp|nntp --ip ADDRESS --action ACTION [--user NAME|anonymous] [--tls] [--object X]\n' +
  '  actions: connect | authenticate | mail (object: sender) | relay, rcpt (object: recipient) | read, post (nntp; object: group)\n' +
  '           read, write, list, delete, mkdir, rename (ftp; object: virtual path) | active_mode (ftp)';

export type ExplainRequest = {
  service: Service;
  ip: string;
  action: string;
  user?: string;
  tls: boolean;
  object?: string;
};

/** Extra explainers registered by listeners whose decisions need more than the core (e.g. FTP paths). */
export const EXPLAINERS: Partial<Record<string, (policy: Policy, identity: Identity, req: ExplainRequest) => Decision>> = {};

export function explain(policy: Policy, users: UserStore, req: ExplainRequest): Decision {
  const identity: Identity =
    req.user === undefined || req.user === '-' ? NOBODY : req.user === 'anonymous' || req.user === 'ftp' ? ANONYMOUS : (users.identityOf(req.user) ?? { kind: 'user', name: req.user, groups: [] });
  const connect = policy.explainConnect(req.service, req.ip);
  const need = (what: string) => {
    if (!req.object) throw usageError(`--action ${req.action} needs --object ${what}`);
    return req.object;
  };
  return andThen(connect, () => {
    const key = `${req.service}:${req.action}`;
    const extra = EXPLAINERS[key];
    if (extra) return extra(policy, identity, req);
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
  const policy = new Policy(config, users, () => {});
  const now = Date.now();
  for (const lock of readLockouts(config.paths.stateDir)) policy.counters.restore(lock, now);
  await loadExplainers();
  const req: ExplainRequest = { service, ip: values.ip, action: values.action, tls: values.tls, ...(values.user !== undefined && { user: values.user }), ...(values.object !== undefined && { object: values.object }) };
  const d = explain(policy, users, req);
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ allow: d.allow, rule: d.rule, reason: d.reason, trace: d.trace })}\n`);
  } else {
    const who = req.user ?? '-';
    process.stdout.write(`${d.allow ? 'ALLOW' : 'DENY'}  ${service} ${req.action}${req.object ? ` ${req.object}` : ''} from ${req.ip} as ${who}${req.tls ? ' over TLS' : ''}\n`);
    process.stdout.write(`  rule:   ${d.rule}\n  reason: ${d.reason}\n  rules consulted:\n`);
    for (const step of d.trace) process.stdout.write(`    ${step.outcome.padEnd(7)} ${step.rule.padEnd(28)} ${step.reason}\n`);
  }
  return d.allow ? 0 : 1;
}

/** Listener folders may register explainers (FTP paths); loaded lazily so the core stays small. */
async function loadExplainers(): Promise<void> {
  const ftpExplainer = '../ftp/explain.js';
  try {
    await import(ftpExplainer);
  } catch {
    /* no FTP explainer yet */
  }
}
