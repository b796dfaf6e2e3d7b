/*
 * The config contract (see ARCHITECTURE.md "Config contract"): key names are a public interface.
 * Every default here is the secure one; anything weaker must be written in the file and is flagged by
 * `gatehouse check` (config/lint.ts). Unknown keys are errors, so a typo such as `anonymus` cannot silently
 * fall back to a default.
 *
 * Every key declares its direction of safety beside its default (raised, lowered, enabled, disabled, ranked,
 * grown, exposed, judged, neutral: see safety.ts); `check` derives its warnings from those declarations and
 * test/config/safety.test.ts fails, naming the key, when one is missing. Adding a key = one line here.
 */
import net from 'node:net';
import { z } from 'zod';
import { disabled, enabled, exposed, grown, judged, lowered, neutral, raised, ranked } from './safety.js';

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

/** A service's lists: they can only narrow the global ones. */
const serviceAccessLists = () =>
  z
    .object({
      allow: neutral(z.array(ipOrCidr).default([]), 'narrows the global allow list (empty = the global list decides); it cannot let anyone in the global list does not'),
      deny: neutral(z.array(ipOrCidr).default([]), 'a deny list only takes away'),
    })
    .strict();

const positiveInt = z.number().int().positive();

/**
 * PROXY protocol (HAProxy v1/v2) on a service's listeners: only peers in `from` may, and must, start their
 * connections with a header; its address is then the client. Empty `from` (the default) = off.
 */
const proxyProtocol = z
  .object({
    from: judged(z.array(ipOrCidr).default([]), 'proxy_from'),
    /** a listed proxy must complete its header within this many seconds (the spec asks for at least 3) */
    header_timeout_s: raised(z.number().int().min(3).max(60).default(5), 'a listed peer may hold a connection this long before its header arrives'),
  })
  .strict();

const userName = z
  .string()
  .regex(/^[a-z][a-z0-9._-]{0,31}$/, 'expected a user name: lower-case letter, then up to 31 of a-z 0-9 . _ -');

const principal = z
  .string()
  .regex(/^(?:authenticated|anonymous|group:[a-z][a-z0-9._-]{0,31}|[a-z][a-z0-9._-]{0,31})$/, 'expected a user name, group:NAME, authenticated or anonymous');

const smarthost = z
  .object({
    host: neutral(z.string().min(1), 'names the next hop'),
    port: neutral(z.number().int().min(1).max(65535).default(587), 'names the next hop'),
    tls: ranked(z.enum(['starttls', 'implicit', 'none']).default('starttls'), ['implicit', 'starttls', 'none'], 'outgoing mail (and the relay password, if any) travel unencrypted to the smarthost', 'smtp.smarthost_plain'),
    verify_cert: disabled(z.boolean().default(true), 'the smarthost certificate is not verified: anyone on the path can pose as the smarthost', 'smtp.smarthost_noverify'),
    user: neutral(z.string().min(1).nullable().default(null), 'a credential for the next hop'),
    password_file: neutral(z.string().min(1).nullable().default(null), 'a credential for the next hop (never printed)'),
    /** seconds an idle pooled connection to the smarthost is kept open for the next message (Postfix: 2) */
    idle_s: raised(z.number().int().min(0).max(300).default(2), "idle connections to the smarthost are held open longer: its connection slots (and an authenticated session) stay taken with nothing to send", 'smtp.smarthost_idle'),
  })
  .strict();

const domainName = z
  .string()
  .regex(/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/, 'expected a lower-case domain name without a trailing dot');

export const smtpSchema = z
  .object({
    enabled: neutral(z.boolean().default(true), 'turning the service on is what the file is for; its keys are judged one by one'),
    listen: exposed(listenAddress.default('127.0.0.1:2525'), 'clients on other machines can connect to SMTP'),
    implicit_tls_listen: exposed(listenAddress.nullable().default(null), 'clients on other machines can connect to SMTPS'),
    access: serviceAccessLists().prefault({}),
    proxy_protocol: proxyProtocol.prefault({}),
    auth_requires_tls: disabled(z.boolean().default(true), 'SMTP AUTH allowed without TLS: passwords cross the network in plain text', 'smtp.plaintext_auth'),
    trusted_networks: judged(z.array(ipOrCidr).default(['127.0.0.1/32', '::1/128']), 'trusted_networks'),
    /** trusted_networks together covering more than 1/2^N of IPv4 (or of IPv6) warn; 8 = more than a /8 */
    trusted_networks_warn_wider_than: lowered(z.number().int().min(0).max(32).default(8), 'trusted_networks may cover a larger share of the address space before check says so'),
    local_domains: neutral(z.array(domainName).default([]), 'mail for a local domain is accepted from anyone, for users that exist: that is what the key is for'),
    relay: z.object({ smarthost: smarthost.nullable().default(null) }).strict().prefault({}),
    /** Received: header contents; show_auth_user names the login (Postfix smtpd_sasl_authenticated_header) */
    received: z
      .object({
        show_auth_user: enabled(z.boolean().default(false), 'the SMTP AUTH login name is written into the Received: header of every message a user sends: every recipient learns half of a credential', 'smtp.received_auth_user'),
      })
      .strict()
      .prefault({}),
    limits: z
      .object({
        message_bytes: raised(positiveInt.default(10_485_760), 'bigger messages accepted: the spool and the mailboxes fill sooner'),
        /**
         * at most 1,000 (Postfix's smtpd_recipient_limit default): a queue entry's envelope line, with every
         * recipient's address and last error at their longest, must stay within what the spool reads back at start-up
         */
        recipients: raised(positiveInt.max(1000).default(100), 'more recipients per message: a stolen account or a trusted host reaches more people with one message'),
        connections: raised(positiveInt.default(100), 'more SMTP sessions at once: more memory and file descriptors one flood can take'),
        connections_per_ip: raised(positiveInt.default(10), 'more SMTP sessions from one address: a single client can take more of the server'),
        idle_timeout_s: raised(positiveInt.default(300), 'a silent SMTP session is held open longer: idle clients tie up connection slots'),
        /** a command line, or a line of DATA, must be complete this many seconds after its first byte (a client trickling a byte at a time keeps resetting the idle timer) */
        line_deadline_s: raised(positiveInt.default(300), 'a client trickling a line a byte at a time (slowloris) holds an SMTP session longer'),
        max_errors: raised(positiveInt.default(10), 'more protocol errors before an SMTP session is dropped: probing and guessing go on longer'),
        /** ms to wait before the 220 greeting; a client that talks in that time gets 421 (0 = greet at once, as Postfix smtpd) */
        greet_pause_ms: lowered(z.number().int().min(0).max(30_000).default(0), 'a shorter pregreet test lets more early-talking spam bots through'),
      })
      .strict()
      .prefault({}),
    queue: z
      .object({
        retry_s: neutral(z.array(positiveInt).min(1).default([60, 300, 900, 3600]), 'retry timing: delivery behaviour, not access'),
        max_age_s: neutral(positiveInt.default(432_000), 'how long a message is retried: delivery behaviour, not access'),
        concurrency: neutral(z.number().int().min(1).max(100).default(10), 'deliveries in flight: throughput, capped at 100'),
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
    /** upload notices: after each committed upload, a digest mail to these readers (src/ftp/notices.ts) */
    notify: z
      .object({
        to: z.array(z.string().regex(/^(?:group:[a-z][a-z0-9._-]{0,31}|[a-z][a-z0-9._-]{0,31}|[^\s@<>()",;:]{1,64}@[a-z0-9.-]{1,253})$/, 'expected a user name, group:NAME or an address user@domain')).min(1),
        digest_s: z.number().int().min(1).max(86_400).default(300),
      })
      .strict()
      .optional(),
  })
  .strict();

export const ftpSchema = z
  .object({
    enabled: neutral(z.boolean().default(true), 'turning the service on is what the file is for; its keys are judged one by one'),
    listen: exposed(listenAddress.default('127.0.0.1:2121'), 'clients on other machines can connect to FTP'),
    access: serviceAccessLists().prefault({}),
    proxy_protocol: proxyProtocol.prefault({}),
    tls_required: disabled(z.boolean().default(true), 'FTP logins allowed without TLS: passwords and files cross the network in plain text', 'ftp.plaintext_auth'),
    tls: z
      .object({
        /** a PROT P data connection must resume the control connection's TLS session (vsftpd's require_ssl_reuse) */
        require_session_reuse: disabled(
          z.boolean().default(true),
          "PROT P data connections need not resume the control connection's TLS session: another program on the client's address can take a transfer by connecting to the passive port first",
          'ftp.tls_no_session_reuse',
        ),
      })
      .strict()
      .prefault({}),
    passive: z
      .object({
        ports: neutral(z
          .string()
          .regex(/^\d{1,5}-\d{1,5}$/, 'expected a port range such as 30000-30099')
          .refine((r) => {
            const [lo, hi] = r.split('-').map(Number) as [number, number];
            return lo >= 1024 && hi <= 65535 && lo <= hi;
          }, 'expected LOW-HIGH with 1024 <= LOW <= HIGH <= 65535')
          .default('30000-30099'), 'data ports; only the control connection\'s address may connect, and ranges over 10000 ports are refused'),
        address: neutral(z.string().refine((a) => net.isIP(a) !== 0, 'expected a literal IP address').nullable().default(null), 'what PASV advertises (NAT); it grants nothing'),
      })
      .strict()
      .prefault({}),
    active_mode: enabled(z.boolean().default(false), 'active-mode FTP (PORT/EPRT) on: the server opens connections outwards (limited to the client address, ports >= 1024)', 'ftp.active_mode'),
    homes: judged(z.string().min(1).default('ftp/home'), 'ftp_folder'),
    /** absolute folders outside state_dir that homes, anonymous.root and share dirs may use; nothing else is served */
    allowed_roots: grown(z.array(z.string().regex(/^\//, 'expected an absolute folder such as /srv/ftp')).default([]), 'FTP may serve files from this folder outside state_dir'),
    anonymous: z
      .object({
        enabled: enabled(z.boolean().default(false), 'anonymous FTP on: anyone who can connect can read the anonymous root', 'ftp.anonymous'),
        root: judged(z.string().min(1).default('ftp/public'), 'ftp_folder'),
        write: ranked(z.enum(['none', 'dropbox']).default('none'), ['none', 'dropbox'], 'anonymous FTP write access (drop box): anyone can upload files and fill the disk', 'ftp.anonymous_write'),
      })
      .strict()
      .prefault({}),
    shares: judged(z.array(share).default([]), 'ftp_shares'),
    /** isolated: <homes>/<user>; directory: homes from the directory entry (inside allowed_roots); shared: one root, per-path rights */
    isolation: neutral(z.enum(['isolated', 'directory', 'shared']).default('isolated'), 'where homes live; directory homes must lie in allowed_roots and shared is judged by ftp.shared.rights'),
    /** ftp.isolation: shared — the one root every user sees, and the rights on it (principal → rights) */
    shared: z
      .object({
        root: judged(z.string().min(1).default('ftp/shared'), 'ftp_folder'),
        rights: judged(z.record(principal, z.array(right)).default({ authenticated: ['list'] }), 'ftp_shared_rights'),
      })
      .strict()
      .prefault({}),
    quota_bytes: raised(positiveInt.default(1_073_741_824), 'a bigger quota per storage root: one user (or a stolen account) can fill more of the disk'),
    limits: z
      .object({
        connections: raised(positiveInt.default(50), 'more FTP sessions at once: more memory and file descriptors one flood can take'),
        connections_per_ip: raised(positiveInt.default(5), 'more FTP sessions from one address: a single client can take more of the server'),
        idle_timeout_s: raised(positiveInt.default(300), 'a silent FTP session is held open longer: idle clients tie up connection slots'),
        /** a command line must be complete this many seconds after its first byte */
        line_deadline_s: raised(positiveInt.default(300), 'a client trickling a line a byte at a time (slowloris) holds an FTP session longer'),
        max_login_failures: raised(positiveInt.default(3), 'more password guesses per FTP session before it is closed'),
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
    enabled: neutral(z.boolean().default(true), 'turning the service on is what the file is for; its keys are judged one by one'),
    listen: exposed(listenAddress.default('127.0.0.1:1119'), 'clients on other machines can connect to NNTP'),
    implicit_tls_listen: exposed(listenAddress.nullable().default(null), 'clients on other machines can connect to NNTPS'),
    access: serviceAccessLists().prefault({}),
    proxy_protocol: proxyProtocol.prefault({}),
    auth_requires_tls: disabled(z.boolean().default(true), 'NNTP AUTHINFO allowed without TLS: passwords cross the network in plain text', 'nntp.plaintext_auth'),
    groups: judged(z
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
      .default([]), 'nntp_groups'),
    /** NNTP peering (feeds): the only servers that may send us articles by IHAVE/TAKETHIS, and those we feed */
    peers: judged(z
      .array(
        z
          .object({
            name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'a peer name: letters, digits, . _ -'),
            host: z.string().min(1).max(253),
            port: z.number().int().min(1).max(65535).default(119),
            tls: z.boolean().default(true),
            groups: z.array(z.string().min(1).max(200)).min(1),
            direction: z.enum(['in', 'out', 'both']).default('both'),
            password_file: z.string().min(1).nullable().default(null),
            articles_per_minute: positiveInt.default(6000),
          })
          .strict(),
      )
      .default([]), 'nntp_peers'),
    /** mail to <group>@domain accepted by SMTP is posted to that group (src/nntp/gateway.ts); null = off */
    mail_gateway: judged(z.object({ domain: domainName }).strict().nullable().default(null), 'nntp_mail_gateway'),
    limits: z
      .object({
        article_bytes: raised(positiveInt.default(1_048_576), 'bigger articles accepted: the news spool fills sooner'),
        connections: raised(positiveInt.default(50), 'more NNTP sessions at once: more memory and file descriptors one flood can take'),
        connections_per_ip: raised(positiveInt.default(5), 'more NNTP sessions from one address: a single client can take more of the server'),
        idle_timeout_s: raised(positiveInt.default(300), 'a silent NNTP session is held open longer: idle clients tie up connection slots'),
        /** a command line, or a line of a POSTed article, must be complete this many seconds after its first byte */
        line_deadline_s: raised(positiveInt.default(300), 'a client trickling a line a byte at a time (slowloris) holds an NNTP session longer'),
        posts_per_minute: raised(positiveInt.default(30), 'more posts per user per minute: a stolen account floods the groups faster'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

const groupName = z.string().regex(/^[a-z][a-z0-9._-]{0,31}$/, 'expected a Gatehouse group name: lower-case letter, then up to 31 of a-z 0-9 . _ -');

export const directorySchema = z
  .object({
    /** ldaps://host[:port], or ldap://host[:port] with starttls: true */
    url: neutral(z.string().regex(/^ldaps?:\/\/[^/\s?#]+\/?$/, 'expected ldaps://HOST[:PORT] or ldap://HOST[:PORT]'), 'the server; an ldap:// URL without starttls is refused unless insecure_plaintext (judged there)'),
    starttls: neutral(z.boolean().default(false), 'how ldap:// is encrypted; without it ldap:// needs insecure_plaintext, which is judged'),
    /** allow a bind over an unencrypted connection (ldap:// without starttls): passwords in clear */
    insecure_plaintext: enabled(z.boolean().default(false), 'directory binds without TLS: the service password and every user\'s password cross the network in clear', 'directory.insecure_plaintext'),
    /** PEM file of the CA(s) that sign the directory's certificate; null = the system store */
    ca_file: neutral(z.string().min(1).nullable().default(null), 'which CA verifies the directory; the certificate is verified either way'),
    bind_dn: neutral(z.string().min(1), 'the service account\'s name'),
    /** file holding the service account's password, mode 0600 or stricter */
    bind_password_file: neutral(z.string().min(1), 'a credential (never printed); its mode is checked at start and by check'),
    user_base: neutral(z.string().min(1), 'where users are searched'),
    /** {user} is replaced by the login name, escaped per RFC 4515 */
    user_filter: neutral(z.string().refine((f) => f.includes('{user}') && f.startsWith('(') && f.endsWith(')'), 'expected a parenthesised LDAP filter containing {user}').default('(|(uid={user})(sAMAccountName={user}))'), 'which entries may log in; the login name is escaped and exactly one entry must match'),
    /** attribute listing the entry's groups (DNs); null = use group_search */
    member_of_attribute: neutral(z.string().min(1).nullable().default('memberOf'), 'where groups are read; only group_map entries count'),
    /** for directories without memberOf: groups whose filter matches the user ({dn} = the user's DN, escaped) */
    group_search: z
      .object({
        base: neutral(z.string().min(1), 'where groups are searched'),
        filter: neutral(z.string().refine((f) => f.includes('{dn}'), 'expected a filter containing {dn}').default('(member={dn})'), 'which groups contain the user; the DN is escaped'),
      })
      .strict()
      .nullable()
      .default(null),
    /** directory group (full DN or its CN) → Gatehouse group name; unmapped groups are ignored */
    group_map: neutral(z.record(z.string().min(1), groupName).default({}), 'names directory groups; the rights of groups are judged where they are used'),
    home: z
      .object({
        /** IIS user isolation pair: root + dir (defaults msIIS-FTPRoot / msIIS-FTPDir) */
        root_attribute: neutral(z.string().min(1).default('msIIS-FTPRoot'), 'an attribute name; homes must lie in ftp.allowed_roots'),
        dir_attribute: neutral(z.string().min(1).default('msIIS-FTPDir'), 'an attribute name; homes must lie in ftp.allowed_roots'),
        /** one attribute holding the whole home (e.g. homeDirectory); when set, root/dir attributes are not used */
        attribute: neutral(z.string().min(1).nullable().default(null), 'an attribute name; homes must lie in ftp.allowed_roots'),
      })
      .strict()
      .prefault({}),
    /** seconds a found entry (DN, groups, home; never a password, never a failure) is remembered */
    cache_s: raised(z.number().int().min(0).max(3600).default(60), 'a user removed from a group or disabled in the directory keeps its groups and home longer (passwords are always checked)', 'directory.long_cache'),
    /** connect and operation timeout against the directory */
    timeout_s: neutral(z.number().int().min(1).max(60).default(5), 'how long a login waits for an unreachable directory before the temporary reply'),
  })
  .strict();

export const configSchema = z
  .object({
    hostname: neutral(domainName.default('gatehouse.test'), 'a name in greetings and headers'),
    state_dir: neutral(z.string().min(1).default('../var'), 'a folder; check judges its mode and owner on disk'),
    users_file: neutral(z.string().min(1).default('users.yaml'), 'a file; check judges its mode and owner on disk'),
    identity: z
      .object({
        /** where user names are looked up, in order; the first that knows a name answers for it */
        sources: judged(
          z
            .array(z.enum(['local', 'directory']))
            .min(1)
            .refine((a) => new Set(a).size === a.length, 'each source at most once')
            .default(['local']),
          'identity_sources',
        ),
      })
      .strict()
      .prefault({}),
    /** an LDAP / Active Directory server (identity.sources: [local, directory]); null = none */
    directory: directorySchema.nullable().default(null),
    tls: z
      .object({
        cert: judged(z.string().min(1).nullable().default(null), 'tls_cert'),
        key: neutral(z.string().min(1).nullable().default(null), 'set with cert; check judges the file\'s mode on disk'),
        min_version: ranked(z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'), ['TLSv1.3', 'TLSv1.2'], 'older TLS versions accepted'),
      })
      .strict()
      .prefault({}),
    auth: z
      .object({
        bcrypt_cost: lowered(z.number().int().min(10).max(15).default(12), 'cheaper password hashes: stolen hashes are cheaper to crack', 'auth.weak_cost'),
        /** seconds a successful password check is remembered in memory (HMAC, never on disk); 0 = bcrypt every login */
        cache_ttl_s: raised(z.number().int().min(0).max(86_400).default(300), 'a remembered login outlives a password change longer'),
        lockout: z
          .object({
            failures: raised(positiveInt.default(5), 'more failed logins per name before it is throttled: more room for password guessing', 'auth.lax_lockout'),
            window_s: lowered(positiveInt.default(900), 'failures are counted over a shorter window: a patient guesser spreads attempts and is never locked out'),
            lock_s: lowered(positiveInt.default(900), 'a shorter lockout: password guessing slows down less', 'auth.short_lockout'),
          })
          .strict()
          .prefault({}),
        /** per-address limits (policy/throttle.ts); `lockout.failures` is the per-name limit */
        throttle: z
          .object({
            address_failures: raised(z.number().int().min(1).max(100_000).default(20), 'more failed logins per address before it is throttled: one address may try more passwords over many names', 'auth.lax_address_throttle'),
            /** for addresses in throttle_exempt: higher, never unlimited */
            exempt_address_failures: raised(z.number().int().min(1).max(100_000).default(200), 'more failed logins per exempt address: a guesser behind that address has more room', 'auth.lax_exempt_throttle'),
            /** counters kept in memory at most (least recently used forgotten first) */
            max_keys: lowered(z.number().int().min(100).max(10_000_000).default(100_000), 'fewer counters kept: a flood of fresh names or addresses makes the throttle forget sooner'),
          })
          .strict()
          .prefault({}),
        /** networks (e.g. an office NAT) that get throttle.exempt_address_failures */
        throttle_exempt: judged(z.array(ipOrCidr).default([]), 'throttle_exempt'),
        familiar: z
          .object({
            /** a successful login makes its address (IPv4 /32, IPv6 /64) familiar for the user this long; 0 = off */
            days: lowered(z.number().int().min(0).max(3650).default(30), 'addresses stay familiar for less time (0 = familiarity off): failures from anywhere throttle a user on more of her own devices (account lockout as a denial of service)', 'auth.familiar_short'),
            max_per_user: lowered(z.number().int().min(1).max(1000).default(20), 'fewer familiar addresses per user: failures elsewhere can throttle her on devices she uses'),
            max_users: lowered(z.number().int().min(1).max(10_000_000).default(100_000), 'fewer users keep familiar addresses: failures elsewhere can throttle the others everywhere'),
          })
          .strict()
          .prefault({}),
        /** the delay before answering a failed or throttled login: base_ms, doubling per miss, capped at max_ms */
        delay: z
          .object({
            base_ms: lowered(z.number().int().min(0).max(60_000).default(500), 'failed and throttled logins are answered sooner: guessing runs faster', 'auth.short_delay'),
            max_ms: lowered(z.number().int().min(0).max(60_000).default(8000), 'a lower cap on the delay before a failed or throttled login is answered: guessing runs faster', 'auth.short_delay'),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    access: z
      .object({
        allow: grown(z.array(ipOrCidr).default([]), 'who may connect at all'),
        deny: neutral(z.array(ipOrCidr).default([]), 'a deny list only takes away'),
      })
      .strict()
      .prefault({ allow: ['0.0.0.0/0', '::/0'], deny: [] }),
    log: z
      .object({
        level: neutral(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'), 'decisions.log records every decision at any level; passwords are never logged'),
        max_bytes: raised(positiveInt.default(10_485_760), 'bigger log files: a flood of refusals can fill more of the disk'),
        keep: raised(z.number().int().min(1).max(100).default(5), 'more rotated log generations: a flood of refusals can fill more of the disk'),
        stdout: neutral(z.boolean().default(true), 'where logs also go; nothing is lost either way'),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({
        listen: exposed(listenAddress.nullable().default(null), 'other machines can read the metrics and the status page (live decisions, user names, client addresses); meant for loopback only'),
        /** required when `listen` is not a loopback address: HTTP Basic password for /metrics and the status page */
        password_file: neutral(z.string().min(1).nullable().default(null), 'a credential (never printed); required off loopback'),
      })
      .strict()
      .prefault({}),
    /**
     * Shared state for several instances (Redis or Valkey): counters that must count across instances live there
     * (today: nntp.limits.posts_per_minute). null url = in-process, per instance (the default).
     */
    state_store: z
      .object({
        url: judged(
          z
            .string()
            .regex(/^rediss?:\/\/\S+$/, 'expected a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379/0')
            .nullable()
            .default(null),
          'state_store',
        ),
        /** a file holding the store's password (AUTH), so the URL in this file needs none */
        password_file: neutral(z.string().min(1).nullable().default(null), 'a credential (never printed)'),
        /** Redis unreachable: `local` = count per instance meanwhile; `refuse` = refuse what needs the shared count */
        on_error: neutral(z.enum(['local', 'refuse']).default('local'), 'judged with state_store.url (what local means is said when a store is set)'),
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
