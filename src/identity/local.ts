/*
 * The users file as an identity source: names and groups from users.yaml, passwords against bcrypt (with the
 * store's verified cache and dummy hash for unknown names).
 */
import type { IdentitySource, Lookup, UserEntry, Verify } from './source.js';
import type { UserStore } from './users.js';

export class LocalSource implements IdentitySource {
  readonly name = 'local' as const;

  constructor(private readonly users: UserStore) {}

  lookup(name: string): Promise<Lookup> {
    const u = this.users.get(name);
    return Promise.resolve(u ? { kind: 'found', entry: { name: u.name, source: 'local', groups: u.groups } } : { kind: 'unknown' });
  }

  async verify(entry: UserEntry, password: string): Promise<Verify> {
    const identity = await this.users.verify(entry.name, password);
    return identity?.kind === 'user' ? { kind: 'ok', identity } : { kind: 'bad' };
  }

  async dummy(name: string, password: string): Promise<Verify> {
    // an unknown name runs the dummy bcrypt comparison inside verify
    await this.users.verify(this.users.has(name) ? '' : name, password);
    return { kind: 'bad' };
  }

  knowsSync(name: string): boolean {
    return this.users.has(name);
  }
}
