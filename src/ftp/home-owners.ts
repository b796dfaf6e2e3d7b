/*
 * Who owns which directory home (ftp.isolation: directory). A directory entry is data someone else edits: an
 * entry pointing at another user's home, or at a folder that contains or lies inside it, must not hand that
 * user's files over. The first user to log into a home claims it, in <state_dir>/ftp/home-owners.json
 * (written atomically, claims serialised in-process); later claims that overlap another owner's are refused.
 * The claimed folder is also checked with realpath, so a symlink inside an allowed root cannot lead out.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { writeFileDurable, ensureDir } from '../net/atomic.js';
import { isInside } from '../identity/home.js';

export function homeOwnersFile(stateDir: string): string {
  return path.join(stateDir, 'ftp', 'home-owners.json');
}

export async function readHomeOwners(file: string): Promise<Record<string, string>> {
  try {
    const data: unknown = JSON.parse(await fs.readFile(file, 'utf8'));
    if (typeof data !== 'object' || data === null || Array.isArray(data)) return {};
    return Object.fromEntries(Object.entries(data as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string'));
  } catch {
    return {};
  }
}

let chain: Promise<unknown> = Promise.resolve();

/** Serialise read-modify-write of the owners file within this process. */
export function serialised<T>(fn: () => Promise<T>): Promise<T> {
  const run = chain.then(fn, fn);
  chain = run.catch(() => undefined);
  return run;
}

/** Claim `home` for `user`; returns null when it is (now) theirs, else why not. */
export function claimHome(stateDir: string, home: string, user: string, allowedRoots: readonly string[]): Promise<string | null> {
  return serialised(async () => {
    const file = homeOwnersFile(stateDir);
    const owners = await readHomeOwners(file);
    for (const [dir, owner] of Object.entries(owners)) {
      if (owner === user) continue;
      if (dir === home || isInside(home, dir) || isInside(dir, home)) return `${home} overlaps the home of ${owner} (${dir})`;
    }
    // the folder as it is on disk: every existing part resolved, none may lead outside the allowed roots
    let probe = home;
    while (probe !== path.dirname(probe)) {
      try {
        const real = await fs.realpath(probe);
        const rest = path.relative(probe, home);
        const resolved = path.join(real, rest);
        const roots = await Promise.all(allowedRoots.map((r) => fs.realpath(r).catch(() => r)));
        if (!roots.some((r) => isInside(resolved, r))) return `${home} resolves to ${resolved}, outside ftp.allowed_roots`;
        break;
      } catch {
        probe = path.dirname(probe);
      }
    }
    if (owners[home] !== user) {
      owners[home] = user;
      ensureDir(path.dirname(file));
      await writeFileDurable(file, `${JSON.stringify(owners, null, 1)}\n`, 0o600);
    }
    return null;
  });
}
