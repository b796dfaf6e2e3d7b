/*
 * `gatehouse explain`: feed facts to the same policy functions the listeners call and print the decision,
 * the rule that made it, the reason, and every rule consulted on the way. No password is ever asked for:
 * a user named with --user is taken to give the right password, an unknown user is refused as the listener
 * refuses them (auth.bad_credentials).
 *
 * A question is answered as a real session meets it: the session passes the stages of SESSION_STAGES in order
 * (connect, TLS, authenticate, then the action) and the first stage that refuses gives the verdict; a stage with
 * nothing to check for this session (no --tls, no --user) is skipped. `--stage NAME` asks one stage alone. A new
 * stage (e.g. a throttle) is one more entry in SESSION_STAGES.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load.js';
import { UserStore } from '../identity/users.js';
import { storeFromFiles } from '../identity/throttle-files.js';
import { Policy, storeLimitsOf, ANONYMOUS, NOBODY, type Decision, type Identity, type Service } from '../policy/index.js';
import { allow, deny, makeDecision } from '../policy/decision.js';
import { decideAuthResult } from '../policy/auth.js';
import { normalizeIp } from '../policy/network.js';
import { decideJail, decidePath, locate, resolveVirtual, type PathAction } from '../policy/paths.js';
import type { Config } from '../config/load.js';
import { jailSpecOf } from '../ftp/jail-spec.js';
import { buildIdentitySources } from '../identity/index.js';
import { identityOf as identityOfEntry } from '../identity/source.js';
import { asParseArgsError, usageError } from './io.js';
import { openThrottleStore } from './throttle.js';

const USAGE =
  'usage: gatehouse explain --service smtp|ftp|nntp --ip ADDRESS [--user NAME|anonymous] [--tls] [--action ACTION [--object X]] [--stage STAGE] [--json]\n' +
  '  actions: connect | authenticate | mail (object: sender) | relay, rcpt (object: recipient) | read, post (nntp; object: group)\n' +
  '           read, write, overwrite, append, list, delete, mkdir, rename (ftp; object: virtual path)\n' +
  '           active_mode (ftp; object: ADDRESS:PORT). Without --action: authenticate with --user, else connect.\n' +
  '  stages:  the session walks connect, tls, throttle, authenticate, action and stops at the first refusal; --stage NAME asks one alone';

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
  const { decision, jail } = decideJail(identity, jailSpecOf(config));
  if (!jail) return decision;
  const lex = resolveVirtual('/', object);
  if (!lex.ok) return lex.decision;
  const d = decidePath(locate(jail, lex), action);
  return d.allow ? allow(d.rule, `${d.reason}; on disk the target must also resolve (realpath) inside ${locate(jail, lex).mount.dir}`, d.trace.slice(0, -1)) : d;
}

/** What a stage sees: the question, the policy and user store it is answered with, and who the client is. */
export interface SessionFacts {
  readonly policy: Policy;
  readonly users: UserStore;
  readonly req: ExplainRequest;
  /** who the client is once logged in (NOBODY when no --user) */
  readonly identity: Identity;
}

/** A stage's answer: a decision, or `skip` with why there is nothing to check at this stage for this session. */
export type StageOutcome = Decision | { readonly skip: string };

/** What the login throttle stage printed (policy.explainThrottle), kept for the output. */
export interface ThrottleNote {
  lines: string[];
}

export interface SessionStage {
  readonly name: string;
  readonly run: (facts: SessionFacts, note: { throttle: ThrottleNote | null }) => StageOutcome | Promise<StageOutcome>;
}

export interface StageReport {
  readonly stage: string;
  readonly outcome: 'permit' | 'reject' | 'skip' | 'not reached';
  readonly rule: string | null;
  readonly reason: string;
}

export interface SessionVerdict {
  /** the verdict; its trace joins the traces of every stage that ran */
  readonly decision: Decision;
  /** the stage that refused, or the last stage that ran when everything allowed */
  readonly stage: string;
  readonly stages: readonly StageReport[];
}

const isUser = (name: string | undefined): name is string => name !== undefined && name !== '-' && name !== 'anonymous' && name !== 'ftp';

function identityOf(users: UserStore, req: ExplainRequest): Identity {
  if (req.user === undefined || req.user === '-') return NOBODY;
  if (!isUser(req.user)) return ANONYMOUS;
  if (req.identity) return req.identity;
  return users.identityOf(req.user) ?? { kind: 'user', name: req.user, groups: [] };
}

function connectStage(f: SessionFacts): StageOutcome {
  return f.policy.explainConnect(f.req.service, f.req.ip);
}

/** TLS is always offered (a self-signed pair is made when none is configured); this stage says what --tls means. */
function tlsStage(f: SessionFacts): StageOutcome {
  if (!f.req.tls) return { skip: 'plain-text session (no --tls)' };
  const how = { smtp: 'STARTTLS', ftp: 'AUTH TLS', nntp: 'STARTTLS' }[f.req.service];
  return allow('tls.offered', `${how} is offered; TLS ${f.policy.currentConfig.tls.min_version.slice(5)} or newer`);
}

/**
 * Login as the listeners do it: FTP's USER anonymous is the anonymous login (refused unless enabled); a named user
 * meets the TLS rule and the lockouts, then the password (assumed right; an unknown user is refused exactly as a
 * wrong password is).
 */
function authenticateStage(f: SessionFacts): StageOutcome {
  const { req, policy, users } = f;
  if (f.identity.kind === 'none') return { skip: 'not logged in (no --user)' };
  const ctx = { service: req.service, ip: req.ip, identity: f.identity, session: 'explain' };
  if (f.identity.kind === 'anonymous') {
    if (req.service === 'ftp') return policy.anonymousLogin(ctx, false);
    return { skip: `${req.service} has no anonymous login: an anonymous client is simply not logged in` };
  }
  const pre = policy.authPrecheck(ctx, f.identity.name, req.tls);
  if (!pre.allow) return pre;
  const known = users.has(f.identity.name) || req.identity !== undefined;
  const d = decideAuthResult(pre, known, f.identity.name);
  return known ? makeDecision(true, d.rule, `${d.reason} (assuming the right password)`, d.trace) : d;
}

/**
 * The login throttle (policy/throttle.ts) for a named user, as the listeners ask it: after the TLS rule (a password
 * refused for want of TLS never reaches it), before the password is compared.
 */
async function throttleStage(f: SessionFacts, note: { throttle: ThrottleNote | null }): Promise<StageOutcome> {
  if (f.identity.kind !== 'user') return { skip: 'no named user to throttle' };
  if (f.policy.requiresTls(f.req.service) && !f.req.tls) return { skip: 'the TLS rule refuses the password first (see authenticate)' };
  const t = await f.policy.explainThrottle(f.identity.name, f.req.ip);
  note.throttle = { lines: t.lines };
  return t.decision;
}

function actionStage(f: SessionFacts): StageOutcome {
  return actionOf(f.req)(f);
}

/** The stages every session passes, in order. One more stage is one more entry. */
export const SESSION_STAGES: readonly SessionStage[] = [
  { name: 'connect', run: connectStage },
  { name: 'tls', run: tlsStage },
  { name: 'throttle', run: throttleStage },
  { name: 'authenticate', run: authenticateStage },
  { name: 'action', run: actionStage },
];

/** The stage that answers an action: connect and authenticate are stages of their own; everything else is `action`. */
function lastStageOf(action: string): string {
  return SESSION_STAGES.some((s) => s.name === action) && action !== 'action' ? action : 'action';
}

/**
 * The check for the request's action, found before the walk starts so a misuse (unknown action, missing --object)
 * is a usage error whatever the earlier stages would say.
 */
function actionOf(req: ExplainRequest): (f: SessionFacts) => Decision {
  const need = (what: string) => {
    if (!req.object) throw usageError(`--action ${req.action} needs --object ${what}\n${USAGE}`);
    return req.object;
  };
  const ctxOf = (f: SessionFacts) => ({ service: req.service, ip: req.ip, identity: f.identity, session: 'explain' });
  if (lastStageOf(req.action) !== 'action') return () => deny('explain.no_action', `${req.action} is a stage, not an action`);
  if (req.service === 'ftp') {
    if (req.action === 'active_mode') {
      const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(need('ADDRESS:PORT'));
      return (f) => f.policy.activeTarget(ctxOf(f), m ? (m[1] ?? m[2])! : null, m ? Number(m[3]) : null, false, false);
    }
    const pathAction = FTP_PATH_ACTIONS[req.action];
    if (pathAction) {
      const object = need('PATH');
      return (f) => explainFtpPath(f.policy.currentConfig, f.identity, pathAction, object);
    }
  }
  if (req.service === 'smtp' && req.action === 'mail') {
    const object = need('SENDER');
    return (f) => f.policy.explainSender(req.ip, f.identity, object);
  }
  if (req.service === 'smtp' && (req.action === 'relay' || req.action === 'rcpt')) {
    const object = need('RECIPIENT');
    return (f) => f.policy.explainRecipient(req.ip, f.identity, object);
  }
  if (req.service === 'nntp' && (req.action === 'read' || req.action === 'post')) {
    const object = need('GROUP');
    const right = req.action;
    return (f) => f.policy.group(ctxOf(f), right, object, false);
  }
  throw usageError(`no action ${JSON.stringify(req.action)} for ${req.service}\n${USAGE}`);
}

function stageNames(): string[] {
  return SESSION_STAGES.map((s) => s.name);
}

/**
 * Walk the session: every stage up to the one that answers the action, stopping at the first refusal. With
 * `only`, ask that one stage alone (a stage with nothing to check is then a usage error).
 */
export async function explainSession(policy: Policy, users: UserStore, req: ExplainRequest, only?: string): Promise<SessionVerdict & { throttle: ThrottleNote | null }> {
  actionOf(req); // usage errors first
  const facts: SessionFacts = { policy, users, req, identity: identityOf(users, req) };
  const note: { throttle: ThrottleNote | null } = { throttle: null };
  if (only !== undefined) {
    const stage = SESSION_STAGES.find((s) => s.name === only);
    if (!stage) throw usageError(`--stage: expected one of ${stageNames().join(', ')}, got ${JSON.stringify(only)}\n${USAGE}`);
    if (only === 'action' && lastStageOf(req.action) !== 'action') throw usageError(`--stage action: ${req.action} is a stage of its own (use --stage ${req.action})\n${USAGE}`);
    const out = await stage.run(facts, note);
    if ('skip' in out) throw usageError(`--stage ${only}: nothing to check for this session: ${out.skip}`);
    return { decision: out, stage: only, stages: [report(only, out)], throttle: note.throttle };
  }
  const lastIndex = SESSION_STAGES.findIndex((s) => s.name === lastStageOf(req.action));
  const stages: StageReport[] = [];
  let trace: Decision['trace'] = [];
  let verdict: { decision: Decision; stage: string } | null = null;
  for (const stage of SESSION_STAGES.slice(0, lastIndex + 1)) {
    if (verdict && !verdict.decision.allow) {
      stages.push({ stage: stage.name, outcome: 'not reached', rule: null, reason: '' });
      continue;
    }
    const out = await stage.run(facts, note);
    stages.push(report(stage.name, out));
    if ('skip' in out) continue;
    trace = [...trace, ...out.trace];
    verdict = { decision: makeDecision(out.allow, out.rule, out.reason, trace), stage: stage.name };
  }
  if (!verdict) throw usageError(`nothing to check for this session\n${USAGE}`);
  return { ...verdict, stages, throttle: note.throttle };
}

function report(stage: string, out: StageOutcome): StageReport {
  if ('skip' in out) return { stage, outcome: 'skip', rule: null, reason: out.skip };
  return { stage, outcome: out.allow ? 'permit' : 'reject', rule: out.rule, reason: out.reason };
}

/** The verdict of a whole session (see explainSession), with what the login throttle said when it was asked. */
export async function explainWithThrottle(policy: Policy, users: UserStore, req: ExplainRequest, only?: string): Promise<{ decision: Decision; throttle: ThrottleNote | null }> {
  const v = await explainSession(policy, users, req, only);
  return { decision: v.decision, throttle: v.throttle };
}

export function explainCommand(args: string[], configFile: string | undefined): Promise<number> {
  return explainAsync(args, configFile);
}

function parse(args: string[]) {
  try {
    return parseArgs({
      args,
      options: {
        config: { type: 'string', short: 'c' },
        service: { type: 'string' },
        ip: { type: 'string' },
        user: { type: 'string' },
        tls: { type: 'boolean', default: false },
        action: { type: 'string' },
        object: { type: 'string' },
        stage: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      strict: true,
    }).values;
  } catch (err) {
    const message = asParseArgsError(err);
    throw message ? usageError(`${message}\n${USAGE}`) : err;
  }
}

/** A name the users file does not know, looked up in the other identity sources (the directory). */
async function directoryIdentity(config: Config, users: UserStore, name: string): Promise<{ identity?: Identity; note: string }> {
  // the logger (pino) is loaded only here, for the directory source: an answer from the users file never needs it
  const { silentLog } = await import('../net/log.js');
  const r = await buildIdentitySources(config, users, silentLog()).lookup(name);
  if (r.kind === 'found') {
    const e = r.entry;
    const home = e.home === undefined ? '' : e.home === null ? `; home refused: ${e.homeProblem ?? 'missing'}` : `; home ${e.home}`;
    return { identity: identityOfEntry(e), note: `note: ${name} is a ${e.source} user${e.dn ? ` (${e.dn})` : ''}; groups: ${e.groups.join(', ') || '-'}${home}\n` };
  }
  if (r.kind === 'unavailable') return { note: `note: ${name} could not be looked up (${r.reason}); a login would get the temporary reply; explained as a user with no groups\n` };
  const where = config.identity.sources.map((x) => (x === 'local' ? config.paths.usersFile : `the directory ${config.directory?.url ?? ''}`)).join(' or ');
  return { note: `note: ${name} is not in ${where}: a login as ${name} is refused like a wrong password\n` };
}

async function explainAsync(args: string[], configFile: string | undefined): Promise<number> {
  const values = parse(args);
  const service = values.service;
  if (service !== 'smtp' && service !== 'ftp' && service !== 'nntp') throw usageError(`${service === undefined ? 'explain needs --service' : `--service: expected smtp, ftp or nntp, got ${JSON.stringify(service)}`}\n${USAGE}`);
  if (!values.ip) throw usageError(`explain needs --ip ADDRESS\n${USAGE}`);
  if (normalizeIp(values.ip) === null) throw usageError(`--ip: expected an IPv4 or IPv6 address, got ${JSON.stringify(values.ip.slice(0, 80))}\n${USAGE}`);
  if (values.stage === 'action' && !values.action) throw usageError(`--stage action needs --action\n${USAGE}`);
  const action = values.action ?? (values.user !== undefined && values.user !== '-' ? 'authenticate' : 'connect');
  const config = loadConfig(values.config ?? configFile);
  const users = UserStore.load(config.paths.usersFile, config.auth.bcrypt_cost);
  const looked = isUser(values.user) && !users.has(values.user) ? await directoryIdentity(config, users, values.user) : null;
  // the throttle's state: the shared store when state_store.url is set (every instance's counts), else the files
  const opened = values.user !== undefined && values.user !== '-' ? await openThrottleStore(config, Date.now()) : null;
  const policy = new Policy(config, users, () => {}, Date.now, opened?.store ?? (await storeFromFiles(config.paths.stateDir, storeLimitsOf(config))).store);
  const req: ExplainRequest = {
    service,
    ip: values.ip,
    action,
    tls: values.tls,
    ...(values.user !== undefined && { user: values.user }),
    ...(values.object !== undefined && { object: values.object }),
    ...(looked?.identity && { identity: looked.identity }),
  };
  const v = await explainSession(policy, users, req, values.stage).finally(() => opened?.close());
  if (opened?.note && !values.json) process.stdout.write(`(${opened.note})\n`);
  const d = v.decision;
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ allow: d.allow, stage: v.stage, rule: d.rule, reason: d.reason, stages: v.stages, trace: d.trace, ...(v.throttle && { throttle: v.throttle.lines }) })}\n`);
  } else {
    const who = req.user ?? '-';
    if (looked) process.stdout.write(looked.note);
    process.stdout.write(`${d.allow ? 'ALLOW' : 'DENY'}  ${service} ${req.action}${req.object ? ` ${req.object}` : ''} from ${req.ip} as ${who}${req.tls ? ' over TLS' : ''}\n`);
    const stageNote = values.stage ? 'asked alone (--stage)' : d.allow ? 'every stage passed' : 'the first stage that refuses';
    process.stdout.write(`  stage:  ${v.stage} (${stageNote})\n  rule:   ${d.rule}\n  reason: ${d.reason}\n  stages:\n`);
    for (const st of v.stages) {
      process.stdout.write(`${`    ${(st.stage === 'action' ? req.action : st.stage).padEnd(14)} ${st.outcome.padEnd(12)} ${[st.rule, st.reason].filter(Boolean).join('  ')}`.trimEnd()}\n`);
    }
    process.stdout.write('  rules consulted:\n');
    for (const step of d.trace) process.stdout.write(`    ${step.outcome.padEnd(7)} ${step.rule.padEnd(28)} ${step.reason}\n`);
    if (v.throttle) process.stdout.write(`  login throttle:\n${v.throttle.lines.map((l) => `    ${l}\n`).join('')}`);
  }
  return d.allow ? 0 : 1;
}
