/*
 * Changing `ftp.isolation` after users have data (`gatehouse ftp isolation MODE [--dry-run]`). IIS never
 * allowed it; here it is a plan, then moves:
 *   - where each user's files are now (isolated: <homes>/<user>; directory: the home they claimed, see
 *     home-owners.ts; shared: <shared root>/<user>) and where the new mode puts them;
 *   - refusals before anything moves: a target that already holds files, a move across file systems (no
 *     atomic rename), a directory that cannot be asked or refuses the home, a target inside a share, the
 *     anonymous root or another user's home, and any principal other than the owner who could read or list
 *     the files where they go (shared mode);
 *   - then each home moves with one rename(2) (atomic, nothing copied, nothing lost), recorded first in a
 *     journal (<state_dir>/ftp/isolation.json) so an interrupted run can be finished by running it again.
 * While it runs, the journal names the target mode and a running server answers FTP logins with 421 until
 * its config says the same mode (the command rewrites `ftp.isolation` in the config file and sends SIGHUP).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import type { Config } from '../config/load.js';
import { GatehouseError } from '../errors.js';
import { isInside } from '../identity/home.js';
import type { IdentitySources } from '../identity/source.js';
import { fsyncDirSync, writeFileDurableSync } from '../net/atomic.js';
import { homeOwnersFile } from './home-owners.js';

export type IsolationMode = 'isolated' | 'directory' | 'shared';

export interface Move {
  readonly user: string;
  readonly from: string;
  readonly to: string;
  readonly files: number;
}

export interface Plan {
  readonly from: IsolationMode;
  readonly to: IsolationMode;
  readonly moves: readonly Move[];
  /** users whose files stay where they are, and why */
  readonly stays: readonly string[];
  /** who could newly reach what */
  readonly exposure: readonly string[];
  /** reasons the change is refused; nothing moves while there is one */
  readonly problems: readonly string[];
}

interface Journal {
  readonly from: IsolationMode;
  readonly to: IsolationMode;
  readonly state: 'moving' | 'done';
  readonly moves: readonly Move[];
  readonly at: string;
}

export function journalFile(stateDir: string): string {
  return path.join(stateDir, 'ftp', 'isolation.json');
}

export function readJournal(stateDir: string): Journal | null {
  try {
    const j = JSON.parse(fs.readFileSync(journalFile(stateDir), 'utf8')) as Journal;
    return typeof j === 'object' && j !== null && typeof j.to === 'string' ? j : null;
  } catch {
    return null;
  }
}

/**
 * For the FTP listener: a switch is under way to a mode this server's config does not have yet, so logins
 * must wait (421) rather than land in a home that is moving.
 */
export function switchPending(config: Config): boolean {
  const j = readJournal(config.paths.stateDir);
  return j !== null && j.to !== config.ftp.isolation;
}

function countFiles(dir: string): number {
  let n = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name));
      else n++;
    }
  };
  walk(dir);
  return n;
}

function isDir(p: string): boolean {
  try {
    return fs.lstatSync(p).isDirectory();
  } catch {
    return false;
  }
}

function subdirs(dir: string): string[] {
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && /^[a-z][a-z0-9._-]{0,31}$/.test(e.name))
      .map((e) => e.name);
  } catch {
    return [];
  }
}

function readOwners(stateDir: string): Record<string, string> {
  try {
    const data = JSON.parse(fs.readFileSync(homeOwnersFile(stateDir), 'utf8')) as Record<string, string>;
    return typeof data === 'object' && data !== null ? data : {};
  } catch {
    return {};
  }
}

/** The nearest existing ancestor's device: rename(2) only works within one file system. */
function deviceOf(p: string): number {
  let probe = p;
  for (;;) {
    try {
      return fs.statSync(probe).dev;
    } catch {
      const up = path.dirname(probe);
      if (up === probe) return -1;
      probe = up;
    }
  }
}

/** The mode the data is in now: the journal's last completed switch, else the config. */
export function currentMode(config: Config): IsolationMode {
  const j = readJournal(config.paths.stateDir);
  return j ? (j.state === 'done' ? j.to : j.from) : config.ftp.isolation;
}

export async function planIsolation(config: Config, to: IsolationMode, sources: IdentitySources): Promise<Plan> {
  const from = currentMode(config);
  const p = config.paths;
  const owners = readOwners(p.stateDir);
  const moves: Move[] = [];
  const stays: string[] = [];
  const exposure: string[] = [];
  const problems: string[] = [];

  // where each user's files are now
  const now = new Map<string, string>();
  if (from === 'shared') for (const u of subdirs(p.ftpSharedRoot)) now.set(u, path.join(p.ftpSharedRoot, u));
  else {
    for (const u of subdirs(p.ftpHomes)) now.set(u, path.join(p.ftpHomes, u));
    if (from === 'directory') for (const [dir, u] of Object.entries(owners)) if (isDir(dir)) now.set(u, dir);
  }
  if (to === from) problems.push(`ftp.isolation is already ${to}`);

  const shareDirs = [...p.shares.values()];
  const claimed = new Map<string, string>();
  for (const [user, src] of [...now].sort((a, b) => a[0].localeCompare(b[0]))) {
    let target: string;
    if (to === 'isolated') target = path.join(p.ftpHomes, user);
    else if (to === 'shared') target = path.join(p.ftpSharedRoot, user);
    else {
      const r = await sources.lookup(user);
      if (r.kind === 'unavailable') {
        problems.push(`${user}: the directory cannot be asked (${r.reason})`);
        continue;
      }
      if (r.kind === 'unknown' || r.entry.home === undefined) {
        target = path.join(p.ftpHomes, user);
      } else if (r.entry.home === null) {
        problems.push(`${user}: the directory gives no usable home (${r.entry.homeProblem ?? 'missing'}); their files would become unreachable`);
        continue;
      } else target = r.entry.home;
    }
    if (target === src) {
      stays.push(`${user}: already at ${src}`);
      continue;
    }
    const files = countFiles(src);
    if (isDir(target) && fs.readdirSync(target).length > 0) problems.push(`${user}: ${target} already holds files; nothing is merged or overwritten`);
    else if (fs.existsSync(target) && !isDir(target)) problems.push(`${user}: ${target} exists and is not a folder`);
    if (deviceOf(src) !== deviceOf(path.dirname(target))) problems.push(`${user}: ${src} and ${target} are on different file systems (no atomic rename)`);
    for (const d of [...shareDirs, p.ftpAnonRoot]) {
      if (target === d || isInside(target, d)) problems.push(`${user}: ${target} lies inside ${d}, which other users or anonymous clients can reach`);
    }
    for (const [other, dir] of claimed) {
      if (target === dir || isInside(target, dir) || isInside(dir, target)) problems.push(`${user}: ${target} overlaps the new home of ${other}`);
    }
    for (const [dir, owner] of Object.entries(owners)) {
      if (owner !== user && (target === dir || isInside(target, dir) || isInside(dir, target))) problems.push(`${user}: ${target} overlaps the home of ${owner} (${dir})`);
    }
    if (to === 'shared') {
      for (const [who, rights] of Object.entries(config.ftp.shared.rights)) {
        const seen = rights.filter((r) => r === 'read' || r === 'list');
        if (who !== user && seen.length > 0) {
          exposure.push(`${user}'s ${files} file(s) would become ${seen.join('/')}-able by ${who}`);
          problems.push(`${user}: ftp.shared.rights gives ${who} ${seen.join(',')} on the shared root; ${user}'s files would become reachable by others`);
        }
      }
    }
    claimed.set(user, target);
    moves.push({ user, from: src, to: target, files });
  }
  if (from === 'shared') {
    const loose = fs.existsSync(p.ftpSharedRoot) ? fs.readdirSync(p.ftpSharedRoot).filter((n) => !now.has(n)) : [];
    if (loose.length > 0) stays.push(`${loose.length} entr${loose.length === 1 ? 'y' : 'ies'} in ${p.ftpSharedRoot} outside any user's folder stay there`);
  }
  return { from, to, moves, stays, exposure, problems };
}

/** Rewrite `ftp.isolation` in the config file, keeping its comments (yaml Document), atomically. */
export function writeIsolationToConfig(configFile: string, mode: IsolationMode): void {
  const doc = parseDocument(fs.readFileSync(configFile, 'utf8'));
  doc.setIn(['ftp', 'isolation'], mode);
  writeFileDurableSync(configFile, doc.toString(), fs.statSync(configFile).mode & 0o777);
}

/**
 * Carry out a plan with no problems: journal first, then one rename per home (parents created 0700), the
 * journal marked done, home owners updated. Safe to run again after an interruption: a move whose source is
 * gone and whose target is there is counted as done.
 */
export function applyIsolation(config: Config, plan: Plan): void {
  if (plan.problems.length > 0) throw new GatehouseError('GH_ERR_ISOLATION', `refused:\n  ${plan.problems.join('\n  ')}`, 1);
  const stateDir = config.paths.stateDir;
  const journal: Journal = { from: plan.from, to: plan.to, state: 'moving', moves: plan.moves, at: new Date().toISOString() };
  fs.mkdirSync(path.dirname(journalFile(stateDir)), { recursive: true, mode: 0o700 });
  writeFileDurableSync(journalFile(stateDir), `${JSON.stringify(journal, null, 1)}\n`, 0o600);
  for (const m of plan.moves) {
    if (!fs.existsSync(m.from) && isDir(m.to)) continue;
    fs.mkdirSync(path.dirname(m.to), { recursive: true, mode: 0o700 });
    if (isDir(m.to)) fs.rmdirSync(m.to); // empty (checked by the plan): rename needs it gone
    fs.renameSync(m.from, m.to);
    fsyncDirSync(path.dirname(m.to));
    fsyncDirSync(path.dirname(m.from));
  }
  const owners = readOwners(stateDir);
  for (const m of plan.moves) {
    for (const [dir, u] of Object.entries(owners)) if (u === m.user) delete owners[dir];
    if (plan.to === 'directory' && !isInside(m.to, config.paths.ftpHomes)) owners[m.to] = m.user;
  }
  writeFileDurableSync(homeOwnersFile(stateDir), `${JSON.stringify(owners, null, 1)}\n`, 0o600);
  writeFileDurableSync(journalFile(stateDir), `${JSON.stringify({ ...journal, state: 'done' }, null, 1)}\n`, 0o600);
}
