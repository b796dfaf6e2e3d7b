/*
 * The user store: virtual users (never system accounts) with bcrypt hashes and group memberships, in one
 * YAML file written atomically with mode 0600; every change is a locked read-modify-write (`update`), so writers
 * running at once (several `gatehouse user` commands) never lose one another's change. Unknown users are compared against a dummy hash of the same
 * cost, so an unknown name and a wrong password take the same time and give the same answer.
 * A successful comparison is remembered in memory for `auth.cache_ttl_s` (as Dovecot's auth cache and saslauthd -c
 * do), so a client that reconnects with the same password skips bcrypt; a wrong password never hits the cache.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { z } from 'zod';
import { GatehouseError } from '../errors.js';
import { writeFileDurable, ensureDir } from '../net/atomic.js';
import { withFileLock } from '../net/file-lock.js';
import type { Identity } from '../policy/types.js';

/**
 * bcrypt (a native module, ~15 ms to load) is loaded on the first hash or comparison, not with this file:
 * `gatehouse check`, `explain` and `user list` read the users file but never hash.
 */
let bcryptModule: Promise<typeof import('bcrypt')> | null = null;
function loadBcrypt(): Promise<typeof import('bcrypt')> {
  bcryptModule ??= import('bcrypt').then((m) => m.default);
  return bcryptModule;
}

export const USER_NAME = /^[a-z][a-z0-9._-]{0,31}$/;
const GROUP_NAME = USER_NAME;
export const MIN_PASSWORD_CHARS = 12;
export const MAX_PASSWORD_BYTES = 72;
/** Names that would confuse the anonymous identity or the file system. */
const RESERVED = new Set(['anonymous', 'ftp', 'authenticated', 'root', 'postmaster-bounce']);

const fileSchema = z
  .object({
    users: z
      .record(
        z.string().regex(USER_NAME),
        z.object({ hash: z.string().regex(/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/), groups: z.array(z.string().regex(GROUP_NAME)).default([]) }).strict(),
      )
      .default({}),
  })
  .strict();

export interface UserRecord {
  readonly name: string;
  readonly hash: string;
  readonly groups: readonly string[];
}

export function checkUserName(name: string): string | null {
  if (!USER_NAME.test(name)) return 'user names are a lower-case letter then up to 31 of a-z 0-9 . _ - (they become folder names)';
  if (name.includes('..')) return 'user names may not contain ".."';
  if (RESERVED.has(name)) return `"${name}" is reserved`;
  return null;
}

export function checkPassword(password: string): string | null {
  if (password.includes('\0')) return 'passwords may not contain NUL bytes';
  if ([...password].length < MIN_PASSWORD_CHARS) return `passwords need at least ${MIN_PASSWORD_CHARS} characters`;
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) {
    return `passwords may be at most ${MAX_PASSWORD_BYTES} bytes in UTF-8 (bcrypt ignores everything after byte 72)`;
  }
  return null;
}

interface Verified {
  readonly hash: string;
  readonly digest: Buffer;
  readonly expires: number;
}

/**
 * Passwords that bcrypt has already accepted, as HMAC-SHA256 digests under a key that lives only in this process
 * (nothing reaches the disk). An entry is tied to the bcrypt hash it was checked against, so a changed or removed
 * user never matches an old entry; only successes are stored, so a wrong password always pays the full bcrypt
 * comparison, exactly like an unknown user. Oldest entries go first past `max`.
 */
export class VerifiedCache {
  private readonly key = crypto.randomBytes(32);
  private readonly entries = new Map<string, Verified>();

  constructor(
    private readonly ttlMs: number,
    private readonly max = 10_000,
    private readonly clock: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  private digest(name: string, password: string): Buffer {
    return crypto.createHmac('sha256', this.key).update(name).update('\0').update(password).digest();
  }

  has(user: UserRecord, password: string): boolean {
    const entry = this.entries.get(user.name);
    if (!entry) return false;
    if (entry.hash !== user.hash || entry.expires <= this.clock()) {
      this.entries.delete(user.name);
      return false;
    }
    return crypto.timingSafeEqual(entry.digest, this.digest(user.name, password));
  }

  remember(user: UserRecord, password: string): void {
    if (this.ttlMs <= 0) return;
    this.entries.delete(user.name);
    while (this.entries.size >= this.max) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(user.name, { hash: user.hash, digest: this.digest(user.name, password), expires: this.clock() + this.ttlMs });
  }
}

export class UserStore {
  private users = new Map<string, UserRecord>();
  private dummyHash: Promise<string> | null = null;
  readonly verified: VerifiedCache;

  constructor(
    readonly file: string,
    private cost: number,
    cacheTtlS = 0,
    clock: () => number = Date.now,
  ) {
    this.verified = new VerifiedCache(cacheTtlS * 1000, 10_000, clock);
  }

  /** `cacheTtlS`: how long a successful verification is remembered (0 = always run bcrypt). */
  static load(file: string, cost: number, cacheTtlS = 0): UserStore {
    const store = new UserStore(file, cost, cacheTtlS);
    store.reload();
    return store;
  }

  setCost(cost: number): void {
    if (cost !== this.cost) this.dummyHash = null;
    this.cost = cost;
  }

  /** Re-read the file; a missing file is an empty store. Throws GatehouseError on a malformed file. */
  reload(): void {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.users = new Map();
        return;
      }
      throw new GatehouseError('GH_ERR_USERS', `${this.file}: cannot read users file (${(err as NodeJS.ErrnoException).code})`);
    }
    let data: unknown;
    try {
      data = parse(text) ?? {};
    } catch (err) {
      throw new GatehouseError('GH_ERR_USERS', `${this.file}: not valid YAML (${(err as Error).message.split('\n')[0]})`);
    }
    const result = fileSchema.safeParse(data, { jitless: true }); // one parse per read: no compiled parser (config/load.ts)
    if (!result.success) {
      const issue = result.error.issues[0]!;
      throw new GatehouseError('GH_ERR_USERS', `${this.file}: ${issue.path.join('.') || '(top level)'}: ${issue.message}`);
    }
    const users = new Map<string, UserRecord>();
    for (const [name, rec] of Object.entries(result.data.users)) users.set(name, Object.freeze({ name, hash: rec.hash, groups: Object.freeze([...rec.groups]) }));
    this.users = users;
  }

  has(name: string): boolean {
    return this.users.has(name);
  }

  get(name: string): UserRecord | undefined {
    return this.users.get(name);
  }

  list(): UserRecord[] {
    return [...this.users.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  identityOf(name: string): Identity | null {
    const u = this.users.get(name);
    return u ? { kind: 'user', name: u.name, groups: u.groups } : null;
  }

  private dummy(): Promise<string> {
    this.dummyHash ??= loadBcrypt().then((bcrypt) => bcrypt.hash('gatehouse-dummy-password-for-timing', this.cost));
    return this.dummyHash;
  }

  /**
   * Warm the dummy hash so the first unknown-user login is not faster or slower than the rest. Start runs this
   * without waiting for it (it is one bcrypt hash on the thread pool); `verify` waits for it for every name.
   */
  async warm(): Promise<void> {
    await this.dummy();
  }

  /**
   * Compare a password. Unless this exact password was accepted for this user's current hash within the cache
   * lifetime, runs exactly one bcrypt comparison, whether or not the user exists and whether or not the password
   * is acceptable at all, so the time taken says nothing about which it was.
   */
  async verify(name: string, password: string): Promise<Identity | null> {
    const user = USER_NAME.test(name) ? this.users.get(name) : undefined;
    const usable = !password.includes('\0') && Buffer.byteLength(password, 'utf8') <= MAX_PASSWORD_BYTES && password.length > 0;
    if (user && usable && this.verified.has(user, password)) return { kind: 'user', name: user.name, groups: user.groups };
    // Every comparison first waits for the dummy hash (warmed at start, in the background): during the warm-up
    // known and unknown names wait alike, afterwards this costs one resolved promise.
    const dummy = await this.dummy();
    const hash = user?.hash ?? dummy;
    const same = await (await loadBcrypt()).compare(usable ? password : 'x', hash);
    if (!user || !usable || !same) return null;
    this.verified.remember(user, password);
    return { kind: 'user', name: user.name, groups: user.groups };
  }

  /** The lock every writer of this users file takes (see net/file-lock.ts). */
  get lockFile(): string {
    return `${this.file}.lock`;
  }

  private async save(users: Map<string, UserRecord>): Promise<void> {
    const data = { users: Object.fromEntries([...users.values()].sort((a, b) => a.name.localeCompare(b.name)).map((u) => [u.name, { hash: u.hash, groups: [...u.groups] }])) };
    const header = '# Gatehouse users: written by `gatehouse user ...`; bcrypt hashes only. Mode 0600.\n';
    await writeFileDurable(this.file, header + stringify(data), 0o600);
    this.users = users;
  }

  /**
   * The one way to change the file: take the writers' lock, re-read, apply `change` to a copy, write it atomically
   * (temporary file, fsync, rename, folder fsync), release. `change` must be quick (no bcrypt inside the lock);
   * it may throw to refuse the change, and then nothing is written.
   */
  async update(change: (users: Map<string, UserRecord>) => void): Promise<void> {
    ensureDir(path.dirname(this.file));
    await withFileLock(
      this.lockFile,
      async () => {
        this.reload();
        const next = new Map(this.users);
        change(next);
        await this.save(next);
      },
      { what: this.file },
    );
  }

  async add(name: string, password: string, groups: readonly string[]): Promise<void> {
    const bad = checkUserName(name) ?? checkPassword(password) ?? checkGroups(groups);
    if (bad) throw new GatehouseError('GH_ERR_USERS', bad, 2);
    this.reload();
    if (this.users.has(name)) throw exists(name);
    const hash = await (await loadBcrypt()).hash(password, this.cost);
    await this.update((users) => {
      if (users.has(name)) throw exists(name);
      users.set(name, { name, hash, groups: [...new Set(groups)] });
    });
  }

  async passwd(name: string, password: string): Promise<void> {
    const bad = checkPassword(password);
    if (bad) throw new GatehouseError('GH_ERR_USERS', bad, 2);
    this.reload();
    if (!this.users.has(name)) throw noSuchUser(name);
    const hash = await (await loadBcrypt()).hash(password, this.cost);
    await this.update((users) => {
      const u = users.get(name);
      if (!u) throw noSuchUser(name);
      users.set(name, { ...u, hash });
    });
  }

  /** Set, add or remove group memberships; returns the groups the user ends up in. */
  async setGroups(name: string, how: { set?: readonly string[]; add?: readonly string[]; remove?: readonly string[] }): Promise<readonly string[]> {
    const bad = checkGroups([...(how.set ?? []), ...(how.add ?? []), ...(how.remove ?? [])]);
    if (bad) throw new GatehouseError('GH_ERR_USERS', bad, 2);
    let result: readonly string[] = [];
    await this.update((users) => {
      const u = users.get(name);
      if (!u) throw noSuchUser(name);
      const groups = new Set(how.set ?? u.groups);
      for (const g of how.add ?? []) groups.add(g);
      for (const g of how.remove ?? []) groups.delete(g);
      result = [...groups];
      users.set(name, { ...u, groups: result });
    });
    return result;
  }

  async remove(name: string): Promise<void> {
    await this.update((users) => {
      if (!users.delete(name)) throw noSuchUser(name);
    });
  }
}

function checkGroups(groups: readonly string[]): string | null {
  const bad = groups.find((g) => !GROUP_NAME.test(g));
  return bad === undefined ? null : `bad group name ${JSON.stringify(bad)} (group names are a lower-case letter then up to 31 of a-z 0-9 . _ -)`;
}

function exists(name: string): GatehouseError {
  return new GatehouseError('GH_ERR_USERS', `user ${name} already exists (use \`gatehouse user passwd ${name}\`)`, 1);
}

function noSuchUser(name: string): GatehouseError {
  return new GatehouseError('GH_ERR_USERS', `no such user ${name}`, 1);
}
