/*
 * The direction of safety of every config key: which way a value moves when it gets weaker than the
 * default. schema.ts wraps each key's schema in one of the helpers below, on the same line as its default:
 *
 *   recipients: raised(positiveInt.default(100), 'a stolen account or a trusted host reaches more people per message'),
 *
 * `gatehouse check` (lint.ts) derives its warnings from these declarations, and test/config/safety.test.ts walks
 * the schema and fails, naming the key, when a key has none. So a new key cannot be added without saying how it
 * weakens: one line, beside its default.
 *
 *   raised     limit raised        weaker when the number is above the default
 *   lowered    limit lowered       weaker when the number is below the default
 *   enabled    feature enabled     weaker when true and the default is false
 *   disabled   check disabled      weaker when false and the default is true
 *   ranked     weaker choice       an enum; weaker when later in the list (safest first) than the default
 *   grown      list widened        weaker for each entry that is not in the default list
 *   exposed    reachable           a listen address; weaker when not loopback
 *   judged     judged by a rule    a named rule in lint.ts reads the value (address coverage, shares, groups…)
 *   neutral    no weaker value     the key names a thing (a path, a name) or can only narrow; the reason is given
 */
import { z } from 'zod';

/** Rules in lint.ts that judge keys a simple direction cannot (lint.ts must implement each: Record<JudgeName, …>). */
export type JudgeName = 'trusted_networks' | 'tls_cert' | 'ftp_folder' | 'ftp_shares' | 'nntp_groups' | 'nntp_peers' | 'identity_sources' | 'ftp_shared_rights' | 'throttle_exempt' | 'proxy_from' | 'state_store' | 'nntp_mail_gateway';

export type Safety =
  | { readonly kind: 'raised' | 'lowered' | 'enabled' | 'disabled' | 'grown' | 'exposed'; readonly risk: string; readonly id?: string }
  | { readonly kind: 'ranked'; readonly order: readonly string[]; readonly risk: string; readonly id?: string }
  | { readonly kind: 'judged'; readonly judge: JudgeName }
  | { readonly kind: 'neutral'; readonly why: string };

/** The table: schema node → its declaration. */
export const safety = z.registry<Safety>();

function declare<T extends z.ZodType>(schema: T, s: Safety): T {
  safety.add(schema, s);
  return schema;
}

/** A limit whose higher values are weaker (more recipients, longer timeouts, bigger messages). */
export const raised = <T extends z.ZodType>(s: T, risk: string, id?: string): T => declare(s, { kind: 'raised', risk, id });
/** A limit whose lower values are weaker (bcrypt cost, lockout duration). */
export const lowered = <T extends z.ZodType>(s: T, risk: string, id?: string): T => declare(s, { kind: 'lowered', risk, id });
/** A feature that is off by default; turning it on weakens. */
export const enabled = <T extends z.ZodType>(s: T, risk: string, id?: string): T => declare(s, { kind: 'enabled', risk, id });
/** A check that is on by default; turning it off weakens. */
export const disabled = <T extends z.ZodType>(s: T, risk: string, id?: string): T => declare(s, { kind: 'disabled', risk, id });
/** An enum, its values safest first. */
export const ranked = <T extends z.ZodType>(s: T, order: readonly string[], risk: string, id?: string): T => declare(s, { kind: 'ranked', order, risk, id });
/** A list where every entry beyond the default's gives something away. */
export const grown = <T extends z.ZodType>(s: T, risk: string, id?: string): T => declare(s, { kind: 'grown', risk, id });
/** A listen address: weaker beyond loopback. */
export const exposed = <T extends z.ZodType>(s: T, risk: string, id?: string): T => declare(s, { kind: 'exposed', risk, id });
/** Judged by a named rule in lint.ts. */
export const judged = <T extends z.ZodType>(s: T, judge: JudgeName): T => declare(s, { kind: 'judged', judge });
/** No value of this key is weaker than another (say why). */
export const neutral = <T extends z.ZodType>(s: T, why: string): T => declare(s, { kind: 'neutral', why });

/** Plain-words name of each direction, as printed by `check`. */
export const KIND_WORDS: Record<Exclude<Safety['kind'], 'judged' | 'neutral'>, string> = {
  raised: 'limit raised',
  lowered: 'limit lowered',
  enabled: 'feature enabled',
  disabled: 'check disabled',
  ranked: 'weaker choice',
  grown: 'list widened',
  exposed: 'reachable from the network',
};

export interface SchemaKey {
  /** dotted key path, e.g. smtp.limits.recipients */
  readonly key: string;
  readonly path: readonly string[];
  /** the declaration, or null when the key has none (a defect the walk test reports) */
  readonly safety: Safety | null;
  /** the key's own default (inside a null parent such as smtp.relay.smarthost), or undefined */
  readonly ownDefault: unknown;
}

/** Wrappers that do not change what a key is: default, prefault, nullable, optional. */
function unwrap(schema: z.ZodType): { inner: z.ZodType; found: Safety | null; ownDefault: unknown } {
  let cur: z.ZodType = schema;
  let found: Safety | null = safety.get(cur) ?? null;
  let ownDefault: unknown = undefined;
  for (;;) {
    if (cur instanceof z.ZodDefault) {
      if (ownDefault === undefined) ownDefault = cur.def.defaultValue;
      cur = cur.def.innerType as z.ZodType;
    } else if (cur instanceof z.ZodPrefault || cur instanceof z.ZodNullable || cur instanceof z.ZodOptional) {
      cur = cur.def.innerType as z.ZodType;
    } else break;
    found ??= safety.get(cur) ?? null;
  }
  return { inner: cur, found, ownDefault };
}

/**
 * Every key of the schema that needs a declaration: each leaf (a value that is not a nested object), and each
 * object key that carries its own declaration (its keys are then covered by it). Lists of objects
 * (ftp.shares, nntp.groups) are one key each: a rule judges them whole.
 */
export function schemaKeys(schema: z.ZodType, prefix: readonly string[] = []): SchemaKey[] {
  const { inner, found, ownDefault } = unwrap(schema);
  if (inner instanceof z.ZodObject && found === null) {
    return Object.entries(inner.shape as Record<string, z.ZodType>).flatMap(([k, v]) => schemaKeys(v, [...prefix, k]));
  }
  return [{ key: prefix.join('.'), path: prefix, safety: found, ownDefault }];
}
