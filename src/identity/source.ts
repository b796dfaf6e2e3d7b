/*
 * Identity sources: where a user name is known and a password checked. Two implementations, the users file
 * (identity/local.ts, bcrypt) and an LDAP / Active Directory server (identity/directory.ts); `IdentitySources`
 * asks them in the order of `identity.sources`, and the first that knows a name answers for it. The policy
 * core only ever sees the result: ok (an Identity), bad, or unavailable (the source could not be asked: a
 * temporary failure, never a wrong password).
 */
import type { Identity } from '../policy/types.js';

export type SourceName = 'local' | 'directory';

/** What a source knows about a user, without secrets. */
export interface UserEntry {
  readonly name: string;
  readonly source: SourceName;
  readonly groups: readonly string[];
  /** directory: the entry's DN */
  readonly dn?: string;
  /**
   * FTP home the source gives this user: undefined = the source gives none (the usual <homes>/<name>);
   * null = the source should give one but the entry's is missing or refused; string = an absolute folder
   */
  readonly home?: string | null;
  /** why the home was refused (null home), for logs and `user show` */
  readonly homeProblem?: string;
}

export type Lookup = { readonly kind: 'found'; readonly entry: UserEntry } | { readonly kind: 'unknown' } | { readonly kind: 'unavailable'; readonly reason: string };

export type Verify = { readonly kind: 'ok'; readonly identity: Identity & { kind: 'user' } } | { readonly kind: 'bad' } | { readonly kind: 'unavailable'; readonly reason: string };

export interface IdentitySource {
  readonly name: SourceName;
  lookup(name: string): Promise<Lookup>;
  /** Check the password of an entry this source found. */
  verify(entry: UserEntry, password: string): Promise<Verify>;
  /** Spend the time a verification of an unknown name would take, then say bad. */
  dummy(name: string, password: string): Promise<Verify>;
  /** Local names a relay rule may ask about synchronously (local deliveries); false when unknown. */
  knowsSync?(name: string): boolean;
  close?(): Promise<void>;
}

export function identityOf(entry: UserEntry): Identity & { kind: 'user' } {
  return entry.home === undefined ? { kind: 'user', name: entry.name, groups: entry.groups } : { kind: 'user', name: entry.name, groups: entry.groups, home: entry.home };
}

/** The ordered list of sources (`identity.sources`). */
export class IdentitySources {
  constructor(readonly sources: readonly IdentitySource[]) {}

  async lookup(name: string): Promise<Lookup> {
    for (const s of this.sources) {
      const r = await s.lookup(name);
      if (r.kind !== 'unknown') return r;
    }
    return { kind: 'unknown' };
  }

  /**
   * First source that knows the name verifies the password. Every source asked before it, which did not know
   * the name, spends its dummy verification alongside (in parallel), and a name no source knows spends all
   * the dummies: so an unknown name costs what a known one costs (a bcrypt comparison and a bind, whichever
   * is longer), and the time does not say which source, if any, knows it. A source that cannot be asked makes
   * the answer `unavailable`: a temporary failure, not a wrong password, unless an earlier source knew the name.
   */
  async verify(name: string, password: string): Promise<Verify> {
    for (const [i, s] of this.sources.entries()) {
      const r = await s.lookup(name);
      if (r.kind === 'unavailable') return r;
      if (r.kind === 'found') {
        const [result] = await Promise.all([s.verify(r.entry, password), ...this.sources.slice(0, i).map((d) => d.dummy(name, password))]);
        return result;
      }
    }
    const results = await Promise.all(this.sources.map((d) => d.dummy(name, password)));
    return results.find((x) => x.kind === 'unavailable') ?? { kind: 'bad' };
  }

  knowsSync(name: string): boolean {
    return this.sources.some((s) => s.knowsSync?.(name) ?? false);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.sources.map((s) => s.close?.() ?? Promise.resolve()));
  }
}
