/*
 * The config contract (see ARCHITECTURE.md "Config contract"): key names are a public interface.
 * Every default here is the secure one; anything weaker must be written in the file and is flagged by
 * `gatehouse check` (config/lint.ts). Unknown keys are errors, so a typo such as `anonymus` cannot silently
 * fall back to a default.
 */
import net from 'node:net';
import { z } from 'zod';

const ipOrCidr = z.string().superRefine((value, ctx) => {
  const [addr, bits, ...rest] = value.split('/');
  const family = net.isIP(addr ?? '');
  if (!addr || family === 0 || rest.length > 0) {
    ctx.addIssue({ code: 'custom', message: 'expected an IPv4 or IPv6 address or CIDR (e.g. 192.0.2.0/24, "::1/128"); leading zeros and short forms are refused' });
    return;
  }
  if (bits !== undefined) {
    const max = family === 4 ? 32 : 128;
    if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) {
      ctx.addIssue({ code: 'custom', message: `expected a prefix length 0..${max}` });
    }
  }
});

export const listenAddress = z.string().superRefine((value, ctx) => {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(value);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || net.isIP(host) === 0 || port > 65535) {
    ctx.addIssue({ code: 'custom', message: 'expected ADDRESS:PORT with a literal IP, e.g. 127.0.0.1:2525 or [::1]:2525 (port 0 = any free port)' });
  }
});

const accessLists = z
  .object({
    allow: z.array(ipOrCidr).default([]),
    deny: z.array(ipOrCidr).default([]),
  })
  .strict();

const positiveInt = z.number().int().positive();

const userName = z
  .string()
  .regex(/^[a-z][a-z0-9._-]{0,31}$/, 'expected a user name: lower-case letter, then up to 31 of a-z 0-9 . _ -');

const principal = z
  .string()
  .regex(/^(?:authenticated|anonymous|group:[a-z][a-z0-9._-]{0,31}|[a-z][a-z0-9._-]{0,31})$/, 'expected a user name, group:NAME, authenticated or anonymous');

const smarthost = z
  .object({
    host: z.string().min(1),
    port: z.number().int().min(1).max(65535).default(587),
    tls: z.enum(['starttls', 'implicit', 'none']).default('starttls'),
    verify_cert: z.boolean().default(true),
    user: z.string().min(1).nullable().default(null),
    password_file: z.string().min(1).nullable().default(null),
  })
  .strict();

const domainName = z
  .string()
  .regex(/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/, 'expected a lower-case domain name without a trailing dot');

export const smtpSchema = z
  .object({
    enabled: z.boolean().default(true),
    listen: listenAddress.default('127.0.0.1:2525'),
    implicit_tls_listen: listenAddress.nullable().default(null),
    access: accessLists.prefault({}),
    auth_requires_tls: z.boolean().default(true),
    trusted_networks: z.array(ipOrCidr).default(['127.0.0.1/32', '::1/128']),
    local_domains: z.array(domainName).default([]),
    relay: z.object({ smarthost: smarthost.nullable().default(null) }).strict().prefault({}),
    limits: z
      .object({
        message_bytes: positiveInt.default(10_485_760),
        recipients: positiveInt.default(100),
        connections: positiveInt.default(100),
        connections_per_ip: positiveInt.default(10),
        idle_timeout_s: positiveInt.default(300),
        /** a command line, or a line of DATA, must be complete this many seconds after its first byte (a client trickling a byte at a time keeps resetting the idle timer) */
        line_deadline_s: positiveInt.default(300),
        max_errors: positiveInt.default(10),
        /** ms to wait before the 220 greeting; a client that talks in that time gets 421 (0 = greet at once, as Postfix smtpd) */
        greet_pause_ms: z.number().int().min(0).max(30_000).default(0),
      })
      .strict()
      .prefault({}),
    queue: z
      .object({
        retry_s: z.array(positiveInt).min(1).default([60, 300, 900, 3600]),
        max_age_s: positiveInt.default(432_000),
        concurrency: z.number().int().min(1).max(100).default(10),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const right = z.enum(['read', 'write', 'list', 'delete', 'mkdir', 'rename']);

const share = z
  .object({
    path: z.string().regex(/^\/[A-Za-z0-9._-]+$/, 'expected a top-level virtual folder such as /dropbox'),
    dir: z.string().min(1),
    rights: z.record(principal, z.array(right)),
  })
  .strict();

export const ftpSchema = z
  .object({
    enabled: z.boolean().default(true),
    listen: listenAddress.default('127.0.0.1:2121'),
    access: accessLists.prefault({}),
    tls_required: z.boolean().default(true),
    passive: z
      .object({
        ports: z
          .string()
          .regex(/^\d{1,5}-\d{1,5}$/, 'expected a port range such as 30000-30099')
          .refine((r) => {
            const [lo, hi] = r.split('-').map(Number) as [number, number];
            return lo >= 1024 && hi <= 65535 && lo <= hi;
          }, 'expected LOW-HIGH with 1024 <= LOW <= HIGH <= 65535')
          .default('30000-30099'),
        address: z.string().refine((a) => net.isIP(a) !== 0, 'expected a literal IP address').nullable().default(null),
      })
      .strict()
      .prefault({}),
    active_mode: z.boolean().default(false),
    homes: z.string().min(1).default('ftp/home'),
    anonymous: z
      .object({
        enabled: z.boolean().default(false),
        root: z.string().min(1).default('ftp/public'),
        write: z.enum(['none', 'dropbox']).default('none'),
      })
      .strict()
      .prefault({}),
    shares: z.array(share).default([]),
    /** absolute folders a home taken from the directory (ftp.isolation: directory) must lie inside */
    allowed_roots: z.array(z.string()).default([]),
    /** isolated: <homes>/<user>; directory: homes from the directory entry (inside allowed_roots); shared: one root, per-path rights */
    isolation: z.enum(['isolated', 'directory', 'shared']).default('isolated'),
    /** ftp.isolation: shared — the one root every user sees, and the rights on it (principal → rights) */
    shared: z
      .object({
        root: z.string().min(1).default('ftp/shared'),
        rights: z.record(principal, z.array(right)).default({ authenticated: ['list'] }),
      })
      .strict()
      .prefault({}),
    quota_bytes: positiveInt.default(1_073_741_824),
    limits: z
      .object({
        connections: positiveInt.default(50),
        connections_per_ip: positiveInt.default(5),
        idle_timeout_s: positiveInt.default(300),
        /** a command line must be complete this many seconds after its first byte */
        line_deadline_s: positiveInt.default(300),
        max_login_failures: positiveInt.default(3),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const newsgroupName = z
  .string()
  .regex(/^[a-z0-9+_-]+(\.[a-z0-9+_-]+)*$/, 'expected a newsgroup name such as office.general');

export const nntpSchema = z
  .object({
    enabled: z.boolean().default(true),
    listen: listenAddress.default('127.0.0.1:1119'),
    implicit_tls_listen: listenAddress.nullable().default(null),
    access: accessLists.prefault({}),
    auth_requires_tls: z.boolean().default(true),
    groups: z
      .array(
        z
          .object({
            name: newsgroupName,
            read: z.array(principal).default([]),
            post: z.array(principal).default([]),
            description: z.string().max(200).default(''),
          })
          .strict(),
      )
      .default([]),
    limits: z
      .object({
        article_bytes: positiveInt.default(1_048_576),
        connections: positiveInt.default(50),
        connections_per_ip: positiveInt.default(5),
        idle_timeout_s: positiveInt.default(300),
        /** a command line, or a line of a POSTed article, must be complete this many seconds after its first byte */
        line_deadline_s: positiveInt.default(300),
        posts_per_minute: positiveInt.default(30),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const groupName = z.string().regex(/^[a-z][a-z0-9._-]{0,31}$/, 'expected a Gatehouse group name: lower-case letter, then up to 31 of a-z 0-9 . _ -');

export const directorySchema = z
  .object({
    /** ldaps://host[:port], or ldap://host[:port] with starttls: true */
    url: z.string().regex(/^ldaps?:\/\/[^/\s?#]+\/?$/, 'expected ldaps://HOST[:PORT] or ldap://HOST[:PORT]'),
    starttls: z.boolean().default(false),
    /** allow a bind over an unencrypted connection (ldap:// without starttls): passwords in clear */
    insecure_plaintext: z.boolean().default(false),
    /** PEM file of the CA(s) that sign the directory's certificate; null = the system store */
    ca_file: z.string().min(1).nullable().default(null),
    bind_dn: z.string().min(1),
    /** file holding the service account's password, mode 0600 or stricter */
    bind_password_file: z.string().min(1),
    user_base: z.string().min(1),
    /** {user} is replaced by the login name, escaped per RFC 4515 */
    user_filter: z.string().refine((f) => f.includes('{user}') && f.startsWith('(') && f.endsWith(')'), 'expected a parenthesised LDAP filter containing {user}').default('(|(uid={user})(sAMAccountName={user}))'),
    /** attribute listing the entry's groups (DNs); null = use group_search */
    member_of_attribute: z.string().min(1).nullable().default('memberOf'),
    /** for directories without memberOf: groups whose filter matches the user ({dn} = the user's DN, escaped) */
    group_search: z
      .object({
        base: z.string().min(1),
        filter: z.string().refine((f) => f.includes('{dn}'), 'expected a filter containing {dn}').default('(member={dn})'),
      })
      .strict()
      .nullable()
      .default(null),
    /** directory group (full DN or its CN) → Gatehouse group name; unmapped groups are ignored */
    group_map: z.record(z.string().min(1), groupName).default({}),
    home: z
      .object({
        /** IIS user isolation pair: root + dir (defaults msIIS-FTPRoot / msIIS-FTPDir) */
        root_attribute: z.string().min(1).default('msIIS-FTPRoot'),
        dir_attribute: z.string().min(1).default('msIIS-FTPDir'),
        /** one attribute holding the whole home (e.g. homeDirectory); when set, root/dir attributes are not used */
        attribute: z.string().min(1).nullable().default(null),
      })
      .strict()
      .prefault({}),
    /** seconds a found entry (DN, groups, home; never a password, never a failure) is remembered */
    cache_s: z.number().int().min(0).max(3600).default(60),
    /** connect and operation timeout against the directory */
    timeout_s: z.number().int().min(1).max(60).default(5),
  })
  .strict();

export const configSchema = z
  .object({
    hostname: domainName.default('gatehouse.test'),
    state_dir: z.string().min(1).default('../var'),
    users_file: z.string().min(1).default('users.yaml'),
    identity: z
      .object({
        /** where user names are looked up, in order; the first that knows a name answers for it */
        sources: z
          .array(z.enum(['local', 'directory']))
          .min(1)
          .refine((a) => new Set(a).size === a.length, 'each source at most once')
          .default(['local']),
      })
      .strict()
      .prefault({}),
    /** an LDAP / Active Directory server (identity.sources: [local, directory]); null = none */
    directory: directorySchema.nullable().default(null),
    tls: z
      .object({
        cert: z.string().min(1).nullable().default(null),
        key: z.string().min(1).nullable().default(null),
        min_version: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
      })
      .strict()
      .prefault({}),
    auth: z
      .object({
        bcrypt_cost: z.number().int().min(10).max(15).default(12),
        /** seconds a successful password check is remembered in memory (HMAC, never on disk); 0 = bcrypt every login */
        cache_ttl_s: z.number().int().min(0).max(86_400).default(300),
        lockout: z
          .object({
            failures: positiveInt.default(5),
            window_s: positiveInt.default(900),
            lock_s: positiveInt.default(900),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    access: accessLists.prefault({ allow: ['0.0.0.0/0', '::/0'], deny: [] }),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
        max_bytes: positiveInt.default(10_485_760),
        keep: z.number().int().min(1).max(100).default(5),
        stdout: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({
        listen: listenAddress.nullable().default(null),
        /** required when `listen` is not a loopback address: HTTP Basic password for /metrics and the status page */
        password_file: z.string().min(1).nullable().default(null),
      })
      .strict()
      .prefault({}),
    smtp: smtpSchema.prefault({}),
    ftp: ftpSchema.prefault({}),
    nntp: nntpSchema.prefault({}),
  })
  .strict();

export type RawConfig = z.output<typeof configSchema>;
export type SmtpConfig = RawConfig['smtp'];
export type FtpConfig = RawConfig['ftp'];
export type NntpConfig = RawConfig['nntp'];
export type ShareConfig = FtpConfig['shares'][number];
export type GroupConfig = NntpConfig['groups'][number];
export type Right = z.output<typeof right>;
export type DirectoryConfig = z.output<typeof directorySchema>;
export { userName };
