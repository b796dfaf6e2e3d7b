/*
 * NAME
 *   policy/paths — the FTP path jail: which file on disk a client path names, and what may be done to it.
 *
 * THREAT
 *   A client path that reaches outside the identity's jail: `..` climbing above `/`, backslashes, NUL and
 *   control bytes, percent-encoded or overlong/invalid UTF-8 spellings of `.` `/` `\`, and symlinks (or hard
 *   links) planted inside a home that point elsewhere (ftp-srv#225: ftp-srv's own resolver is lexical only
 *   and every fs call follows links). Also: a drop box that lets uploaders see, fetch, overwrite, rename or
 *   delete each other's files; a mount point deleted or renamed away.
 *
 * DESCRIPTION
 *   Three steps, each refusing on doubt. `resolveVirtual` is lexical and pure: it turns (cwd, input) into a
 *   canonical virtual path or a refusal. `decidePath` is pure: it maps the virtual path to a mount of the
 *   jail and checks the mount's rights for the action. `confine` does the I/O: realpath of the target (or of
 *   its parent for a name to be created) must stay under the mount's real root, and only then is a
 *   `JailPath` made. `JailPath` is branded: the file layer (src/ftp/jail-fs.ts) accepts nothing else, so a
 *   path that skipped a step does not type-check.
 *
 * RULES
 *   paths.syntax          reject   NUL/control byte, backslash, %XX escape, U+FFFD (invalid UTF-8), too long
 *   paths.escape          reject   `..` climbs above the jail's `/`
 *   paths.reserved        reject   a name of an upload in progress (`.gh-part-*`)
 *   paths.mount_root      reject   delete/rename/create the root of a mount (the home, a share, incoming)
 *   paths.rights          reject   the mount does not grant the right the action needs
 *   paths.dropbox         reject   overwrite/append in a drop box (write without read/list): never
 *   paths.outside         reject   realpath leaves the mount root (symlink out, into another home or share)
 *   paths.symlink         reject   a symlink where a new file would go, or any symlink in a drop box
 *   paths.hardlink        reject   a regular file with more than one link (a planted hard link)
 *   paths.ok              permit
 *
 * RULES for a login's jail (decideJail, after the password, before the jail's folders are prepared)
 *   paths.no_jail         reject   the identity has no jail: not logged in, a user name no home can be made of,
 *                                  shared isolation without a root, or a directory home that was refused (null)
 *                                  or is not absolute
 *   paths.jail            permit   the identity's jail root (and mounts) are known
 *
 * MLST / MLSD
 *   `permFacts` answers RFC 3659's `perm` fact from the same `decidePath` rules, so a listing never promises
 *   more (or less) than the commands will do: a drop box's folder shows `perm=ce` (create, enter), no `l`, no `r`.
 */
import fs, { type Stats } from 'node:fs';
import path from 'node:path';
import { allow, deny } from './decision.js';
import type { Decision, Identity } from './types.js';

export type PathRight = 'read' | 'write' | 'list' | 'delete' | 'mkdir' | 'rename';

export const ALL_RIGHTS: readonly PathRight[] = ['read', 'write', 'list', 'delete', 'mkdir', 'rename'];

/** What a command wants to do with a path. */
export type PathAction =
  | 'cwd'
  | 'list'
  | 'stat'
  | 'read'
  | 'create'
  | 'overwrite'
  | 'append'
  | 'delete'
  | 'mkdir'
  | 'rename_from'
  | 'rename_to';

export type MountKind = 'home' | 'anonymous' | 'incoming' | 'share';

export interface Mount {
  /** `/` for the jail root, else `/name` (one segment). */
  readonly virtual: string;
  /** absolute folder on disk */
  readonly dir: string;
  readonly kind: MountKind;
  readonly rights: ReadonlySet<PathRight>;
}

export interface Jail {
  readonly root: Mount;
  /** top-level virtual folders (shares, incoming), by name without the slash */
  readonly mounts: ReadonlyMap<string, Mount>;
}

export interface ShareSpec {
  readonly path: string;
  readonly dir: string;
  readonly rights: Readonly<Record<string, readonly PathRight[]>>;
}

export interface JailSpec {
  /** `<ftpHomes>`: a user's home is `<homes>/<name>` */
  readonly homes: string;
  readonly anonRoot: string;
  readonly anonWrite: 'none' | 'dropbox';
  readonly shares: readonly ShareSpec[];
  /**
   * ftp.isolation. isolated (default): every user's root is <homes>/<name>. directory: a user whose identity
   * source gave a home (Identity.home) gets it, a null home (missing or refused) gets no jail, others keep
   * <homes>/<name>. shared: everyone's root is `sharedRoot` with only the rights `sharedRights` grants.
   */
  readonly isolation?: 'isolated' | 'directory' | 'shared';
  readonly sharedRoot?: string;
  readonly sharedRights?: Readonly<Record<string, readonly PathRight[]>>;
}

export const MAX_PATH_CHARS = 1024;
/** Uploads in progress are written under this prefix in the target folder; clients can never name one. */
export const TEMP_PREFIX = '.gh-part-';
export const MAX_SEGMENT_BYTES = 255;

/** Rights a principal list grants an identity: user name, `group:NAME`, `authenticated`, `anonymous`. */
export function rightsFor(identity: Identity, rights: Readonly<Record<string, readonly PathRight[]>>): Set<PathRight> {
  const out = new Set<PathRight>();
  for (const [principal, granted] of Object.entries(rights)) {
    let match = false;
    if (identity.kind === 'user') {
      match = principal === identity.name || principal === 'authenticated' || (principal.startsWith('group:') && identity.groups.includes(principal.slice(6)));
    } else if (identity.kind === 'anonymous') {
      match = principal === 'anonymous';
    }
    if (match) for (const r of granted) out.add(r);
  }
  return out;
}

/** The jail of an identity. Nobody (not logged in) gets null: no file access at all. */
export function buildJail(identity: Identity, spec: JailSpec): Jail | null {
  let root: Mount;
  const mounts = new Map<string, Mount>();
  if (identity.kind === 'user') {
    if (!/^[a-z][a-z0-9._-]{0,31}$/.test(identity.name)) return null;
    const mode = spec.isolation ?? 'isolated';
    if (mode === 'shared') {
      if (!spec.sharedRoot) return null;
      root = { virtual: '/', dir: spec.sharedRoot, kind: 'share', rights: rightsFor(identity, spec.sharedRights ?? {}) };
    } else if (mode === 'directory' && identity.home !== undefined) {
      if (identity.home === null || !path.isAbsolute(identity.home)) return null;
      root = { virtual: '/', dir: identity.home, kind: 'home', rights: new Set(ALL_RIGHTS) };
    } else {
      root = { virtual: '/', dir: path.join(spec.homes, identity.name), kind: 'home', rights: new Set(ALL_RIGHTS) };
    }
  } else if (identity.kind === 'anonymous') {
    root = { virtual: '/', dir: spec.anonRoot, kind: 'anonymous', rights: new Set<PathRight>(['read', 'list']) };
    if (spec.anonWrite === 'dropbox') {
      mounts.set('incoming', { virtual: '/incoming', dir: path.join(spec.anonRoot, 'incoming'), kind: 'incoming', rights: new Set<PathRight>(['write']) });
    }
  } else {
    return null;
  }
  for (const share of spec.shares) {
    const rights = rightsFor(identity, share.rights);
    const name = share.path.slice(1);
    if (rights.size === 0 || mounts.has(name)) continue;
    mounts.set(name, { virtual: share.path, dir: share.dir, kind: 'share', rights });
  }
  return { root, mounts };
}

export interface JailDecision {
  readonly decision: Decision;
  /** the jail, when the decision allows */
  readonly jail: Jail | null;
}

/** May this identity have file access at all, and in which jail? */
export function decideJail(identity: Identity, spec: JailSpec): JailDecision {
  const jail = buildJail(identity, spec);
  if (jail) return { decision: allow('paths.jail', `${jail.root.kind} jail with ${jail.mounts.size} mount(s)`), jail };
  const reason =
    identity.kind === 'none' ? 'not logged in: no file access at all'
    : identity.kind === 'user' && identity.home === null ? 'the directory gives this user no usable home (see the directory_home_refused log line)'
    : 'identity has no jail';
  return { decision: deny('paths.no_jail', reason), jail: null };
}

export type Lexical = { readonly ok: true; readonly virtual: string; readonly segments: readonly string[] } | { readonly ok: false; readonly decision: Decision };

/**
 * Canonical virtual path of `input` seen from `cwd` (both client-side, `/`-separated). Pure and lexical:
 * `.` is dropped, `..` pops one segment and may not climb above `/`; anything that could be read as an
 * encoding trick is refused rather than interpreted.
 */
export function resolveVirtual(cwd: string, input: string): Lexical {
  const bad = (rule: string, reason: string): Lexical => ({ ok: false, decision: deny(rule, reason) });
  if (input.length > MAX_PATH_CHARS || cwd.length > MAX_PATH_CHARS) return bad('paths.syntax', 'path too long');
  if (/[\u0000-\u001f\u007f]/.test(input)) return bad('paths.syntax', 'control character or NUL in path');
  if (input.includes('\\')) return bad('paths.syntax', 'backslash in path');
  if (/%[0-9a-fA-F]{2}/.test(input)) return bad('paths.syntax', 'percent-encoded sequence in path');
  if (input.includes('\uFFFD')) return bad('paths.syntax', 'invalid UTF-8 in path');
  if (/\p{Cs}/u.test(input)) return bad('paths.syntax', 'lone surrogate in path');
  const start = input.startsWith('/') ? [] : cwd.split('/').filter((s) => s !== '' && s !== '.');
  const segments = [...start];
  for (const seg of input.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (segments.length === 0) return bad('paths.escape', '`..` above the root of the jail');
      segments.pop();
      continue;
    }
    if (Buffer.byteLength(seg, 'utf8') > MAX_SEGMENT_BYTES) return bad('paths.syntax', 'name longer than 255 bytes');
    if (seg.startsWith(TEMP_PREFIX)) return bad('paths.reserved', 'name reserved for uploads in progress');
    segments.push(seg);
  }
  if (segments.some((s) => s === '..')) return bad('paths.escape', 'cwd not canonical');
  return { ok: true, virtual: `/${segments.join('/')}`, segments };
}

export interface Target {
  readonly virtual: string;
  readonly mount: Mount;
  /** segments below the mount root; empty = the mount root itself */
  readonly rest: readonly string[];
  /** true for the virtual `/` of a jail that has mounts (the listing shows the mounts) */
  readonly isJailRoot: boolean;
}

export function locate(jail: Jail, lexical: { virtual: string; segments: readonly string[] }): Target {
  const first = lexical.segments[0];
  const mount = first === undefined ? undefined : jail.mounts.get(first);
  if (mount) return { virtual: lexical.virtual, mount, rest: lexical.segments.slice(1), isJailRoot: false };
  return { virtual: lexical.virtual, mount: jail.root, rest: lexical.segments, isJailRoot: lexical.segments.length === 0 };
}

export function isDropBox(mount: Mount): boolean {
  return mount.rights.has('write') && !mount.rights.has('read') && !mount.rights.has('list');
}

const NEEDS: Record<PathAction, readonly (readonly PathRight[])[]> = {
  // each inner list is an alternative; every right of one alternative is needed
  cwd: [['list'], ['read'], ['write']],
  list: [['list']],
  stat: [['list'], ['read']],
  read: [['read']],
  create: [['write']],
  overwrite: [['write', 'delete', 'read'], ['write', 'delete', 'list']],
  append: [['write', 'delete', 'read'], ['write', 'delete', 'list']],
  delete: [['delete']],
  mkdir: [['mkdir']],
  rename_from: [['rename']],
  rename_to: [['rename']],
};

const MOUNT_ROOT_FORBIDDEN: ReadonlySet<PathAction> = new Set(['create', 'overwrite', 'append', 'delete', 'mkdir', 'rename_from', 'rename_to']);

/** Pure: may `action` be done on `target`? */
export function decidePath(target: Target, action: PathAction): Decision {
  const { mount } = target;
  if (target.rest.length === 0 && MOUNT_ROOT_FORBIDDEN.has(action)) {
    return deny('paths.mount_root', `cannot ${action.replace('_', ' ')} the root of ${mount.virtual}`);
  }
  if ((action === 'overwrite' || action === 'append') && isDropBox(mount)) {
    return deny('paths.dropbox', `${mount.virtual} is a drop box: existing files are never overwritten or appended to`);
  }
  const ok = NEEDS[action].some((alt) => alt.every((r) => mount.rights.has(r)));
  if (!ok) return deny('paths.rights', `${action.replace('_', ' ')} not granted on ${mount.virtual}`);
  return allow('paths.ok', `${action.replace('_', ' ')} granted on ${mount.virtual}`);
}

/**
 * RFC 3659 §7.5.5 `perm` of `target` (a file or a folder) for the jail's identity, from `decidePath`: file
 * a (APPE) d (DELE) f (RNFR) r (RETR) w (STOR over it); folder c (STOR a new name in it) d (RMD) e (CWD)
 * f (RNFR) l (LIST/MLSD) m (MKD in it) p (DELE in it).
 */
export function permFacts(target: Target, type: 'file' | 'dir'): string {
  const may = (t: Target, action: PathAction) => decidePath(t, action).allow;
  if (type === 'file') {
    return ([['a', 'append'], ['d', 'delete'], ['f', 'rename_from'], ['r', 'read'], ['w', 'overwrite']] as const)
      .filter(([, action]) => may(target, action))
      .map(([letter]) => letter)
      .join('');
  }
  const child: Target = { virtual: `${target.virtual.replace(/\/$/, '')}/_`, mount: target.mount, rest: [...target.rest, '_'], isJailRoot: false };
  const letters: [string, Target, PathAction][] = [
    ['c', child, 'create'],
    ['d', target, 'delete'],
    ['e', target, 'cwd'],
    ['f', target, 'rename_from'],
    ['l', target, 'list'],
    ['m', child, 'mkdir'],
    ['p', child, 'delete'],
  ];
  return letters
    .filter(([, t, action]) => may(t, action))
    .map(([letter]) => letter)
    .join('');
}

declare const jailBrand: unique symbol;

/** An absolute disk path proven to lie inside a mount root. Only `confine` makes one. */
export interface JailPath {
  readonly abs: string;
  readonly virtual: string;
  readonly mount: Mount;
  /** the real root of the mount (realpath) */
  readonly root: string;
  /** lstat of the final name, null when it does not exist yet */
  readonly stat: Stats | null;
  readonly [jailBrand]: true;
}

export type Confined = { readonly ok: true; readonly path: JailPath } | { readonly ok: false; readonly decision: Decision; readonly missing?: boolean };

/*
 * The containment checks are synchronous: realpath(3) and lstat of names already in the dentry cache take a
 * few microseconds, a round trip through the libuv thread pool 20-300 (several per FTP command under load).
 * They never write, so they do not wait for the journal.
 */
const realpath = (p: string): string => fs.realpathSync.native(p);

function inside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
}

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/**
 * Prove that `target` stays inside its mount on disk. `existing`: the name must exist; its realpath must be
 * under the mount's realpath. `create`: the parent must exist and be inside, and the final name must not
 * be a symlink (dangling or not). Drop boxes refuse every symlink; nobody gets a file with nlink > 1.
 */
export function confine(target: Target, mode: 'existing' | 'create' | 'maybe'): Confined {
  const { mount } = target;
  let root: string;
  try {
    root = realpath(mount.dir);
  } catch {
    return { ok: false, decision: deny('paths.outside', `${mount.virtual} is not available`), missing: true };
  }
  const lexical = path.join(mount.dir, ...target.rest);
  if (!inside(path.resolve(mount.dir), path.resolve(lexical))) return { ok: false, decision: deny('paths.escape', 'lexical escape') };
  if (target.rest.length === 0) {
    const st = fs.lstatSync(root);
    return { ok: true, path: brand({ abs: root, virtual: target.virtual, mount, root, stat: st }) };
  }
  let parentReal: string;
  try {
    parentReal = realpath(path.dirname(lexical));
  } catch (err) {
    const missing = errCode(err) === 'ENOENT' || errCode(err) === 'ENOTDIR';
    return { ok: false, decision: deny('paths.missing', 'no such file or folder'), missing };
  }
  if (!inside(root, parentReal)) return { ok: false, decision: deny('paths.outside', 'path leads outside the jail') };
  const name = path.basename(lexical);
  let abs = path.join(parentReal, name);
  let st: Stats | null = null;
  try {
    st = fs.lstatSync(abs, { throwIfNoEntry: false }) ?? null;
  } catch {
    return { ok: false, decision: deny('paths.missing', 'cannot stat') };
  }
  if (st === null) {
    if (mode === 'existing') return { ok: false, decision: deny('paths.missing', 'no such file or folder'), missing: true };
    return { ok: true, path: brand({ abs, virtual: target.virtual, mount, root, stat: null }) };
  }
  if (st.isSymbolicLink()) {
    if (mode === 'create' || isDropBox(mount) || mount.kind === 'incoming') return { ok: false, decision: deny('paths.symlink', 'refusing a symbolic link') };
    let real: string;
    try {
      real = realpath(abs);
    } catch {
      return { ok: false, decision: deny('paths.outside', 'dangling symbolic link') };
    }
    if (!inside(root, real)) return { ok: false, decision: deny('paths.outside', 'symbolic link leads outside the jail') };
    abs = real;
    st = fs.lstatSync(abs);
  }
  if (st.isFile() && st.nlink > 1) return { ok: false, decision: deny('paths.hardlink', 'refusing a file with several hard links') };
  if (!st.isFile() && !st.isDirectory()) return { ok: false, decision: deny('paths.special', 'not a regular file or folder') };
  return { ok: true, path: brand({ abs, virtual: target.virtual, mount, root, stat: st }) };
}

function brand(p: Omit<JailPath, typeof jailBrand>): JailPath {
  return Object.freeze(p) as JailPath;
}

/** Is a directory entry (by lstat) safe to show in a listing of `dir` (itself a JailPath)? */
export function listable(dir: JailPath, name: string): Stats | null {
  const abs = path.join(dir.abs, name);
  let st: Stats;
  try {
    st = fs.lstatSync(abs);
  } catch {
    return null;
  }
  if (st.isSymbolicLink()) {
    if (isDropBox(dir.mount) || dir.mount.kind === 'incoming') return null;
    try {
      const real = realpath(abs);
      if (!inside(dir.root, real)) return null;
      st = fs.statSync(real);
    } catch {
      return null;
    }
  }
  if (!st.isFile() && !st.isDirectory()) return null;
  if (st.isFile() && st.nlink > 1) return null;
  return st;
}
