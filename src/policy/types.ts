/*
 * NAME
 *   policy/types — the one request vocabulary every listener speaks to the policy core.
 *
 * DESCRIPTION
 *   A listener turns a protocol event into a PolicyRequest and gets back a Decision. A Decision can only be
 *   made by the functions of this folder (the brand stops a listener from forging one), so "an action happens
 *   only with a Decision in hand" is a type-level fact, not a convention.
 */

export type Service = 'smtp' | 'ftp' | 'nntp';

export type Identity =
  | { readonly kind: 'none' }
  | { readonly kind: 'anonymous' }
  | {
      readonly kind: 'user';
      readonly name: string;
      readonly groups: readonly string[];
      /**
       * The FTP home the identity source gave (ftp.isolation: directory): absent = none given (<homes>/<name>),
       * null = one was expected but is missing or was refused, string = an absolute folder already checked
       * against ftp.allowed_roots
       */
      readonly home?: string | null;
    };

export const NOBODY: Identity = Object.freeze({ kind: 'none' });
export const ANONYMOUS: Identity = Object.freeze({ kind: 'anonymous' });

export type Action =
  | 'connect'
  | 'authenticate'
  | 'mail'
  | 'relay'
  | 'read'
  | 'write'
  | 'list'
  | 'delete'
  | 'mkdir'
  | 'rename'
  | 'post'
  | 'active_mode';

export interface PolicyRequest {
  readonly service: Service;
  readonly clientIp: string;
  readonly identity: Identity;
  readonly tls: boolean;
  readonly action: Action;
  readonly object?: string;
}

/** Postfix's tri-state: a rule permits, rejects, or has nothing to say (dunno) and lets the next one speak. */
export type Outcome = 'permit' | 'reject' | 'dunno';

export interface RuleStep {
  readonly rule: string;
  readonly outcome: Outcome;
  readonly reason: string;
}

declare const decisionBrand: unique symbol;

export interface Decision {
  readonly allow: boolean;
  /** The rule that made the decision, e.g. `relay.trusted_networks` or `access.deny[0]`. */
  readonly rule: string;
  readonly reason: string;
  /** Every rule consulted on the way, in order (what `gatehouse explain` prints). */
  readonly trace: readonly RuleStep[];
  readonly [decisionBrand]: true;
}

export function identityLabel(identity: Identity): string {
  switch (identity.kind) {
    case 'none':
      return '-';
    case 'anonymous':
      return 'anonymous';
    case 'user':
      return identity.name;
  }
}
