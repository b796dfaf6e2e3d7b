/*
 * Homes taken from a directory entry (IIS "isolate users using Active Directory": msIIS-FTPRoot +
 * msIIS-FTPDir, or one attribute such as homeDirectory). The entry is data someone else controls: a home
 * is accepted only when it is an absolute local folder strictly inside one of `ftp.allowed_roots`, with no
 * `..`, control bytes or Windows drive/UNC syntax; anything else is refused, never followed. (The FTP login
 * then also checks with realpath that no symlink leads out, and that no other user already owns it.)
 */
import path from 'node:path';

export type HomeResult = { readonly ok: true; readonly home: string } | { readonly ok: false; readonly problem: string };

const BAD_CHARS = /[\u0000-\u001f\u007f]/;

/** Is `child` strictly below `parent` (both absolute and normalised)? */
export function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

export function homeFromAttributes(values: { root?: string | undefined; dir?: string | undefined; single?: string | undefined }, allowedRoots: readonly string[]): HomeResult {
  let joined: string;
  if (values.single !== undefined) {
    if (values.single === '') return { ok: false, problem: 'home attribute is empty' };
    joined = values.single;
  } else {
    if (!values.root) return { ok: false, problem: 'entry has no home root attribute' };
    if (values.dir === undefined || values.dir === '') return { ok: false, problem: 'entry has no home dir attribute' };
    if (values.dir.startsWith('/') || values.dir.startsWith('\\') || /^[A-Za-z]:/.test(values.dir)) return { ok: false, problem: `home dir ${JSON.stringify(values.dir)} is not relative to the root` };
    // msIIS-FTPDir is written with Windows separators in AD (users\alice)
    joined = `${values.root.replace(/\/+$/, '')}/${values.dir.replace(/\\/g, '/')}`;
  }
  if (BAD_CHARS.test(joined)) return { ok: false, problem: 'home contains control characters' };
  if (/^[A-Za-z]:|^\\\\|\\/.test(joined) && values.single !== undefined) return { ok: false, problem: `home ${JSON.stringify(joined)} is a Windows path, not a local folder` };
  if (/^[A-Za-z]:|^\\\\/.test(joined)) return { ok: false, problem: `home root ${JSON.stringify(values.root)} is a Windows path, not a local folder` };
  if (!joined.startsWith('/')) return { ok: false, problem: `home ${JSON.stringify(joined)} is not an absolute folder` };
  if (joined.split('/').some((seg) => seg === '..' || seg === '.')) return { ok: false, problem: `home ${JSON.stringify(joined)} contains . or .. segments` };
  const home = path.normalize(joined).replace(/(.)\/+$/, '$1');
  const root = allowedRoots.find((r) => isInside(home, path.normalize(r)));
  if (!root) return { ok: false, problem: `home ${home} is not inside ftp.allowed_roots (${allowedRoots.join(', ') || 'none set'})` };
  return { ok: true, home };
}
