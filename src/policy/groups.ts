/*
 * NAME
 *   policy/groups — newsgroup rights (NNTP read and post).
 *
 * THREAT
 *   Leaking private discussion and its very existence. A group the identity cannot read does not exist for
 *   it: listings omit it, GROUP answers 411 and its articles 430, exactly as for a name nobody created.
 *   Posting needs the post right on every group named in Newsgroups: (a cross-post cannot smuggle an
 *   article into a group through a group the poster may use).
 *
 * PRINCIPALS
 *   a user name · group:NAME (a user group from the users file) · authenticated (any user) · anonymous
 *   (only the unauthenticated reader: users are not anonymous)
 *
 * RULES
 *   group.unknown      reject   no such group in config (same reason as hidden, on purpose)
 *   group.read|post    permit   a principal in the group's list matches the identity
 *   group.default      reject   no principal matched
 *
 * RULES for POST itself (before the article is read; each of its groups is then decided as above)
 *   nntp.post_somewhere    permit   some group's post list names the identity
 *   nntp.post_not_allowed  reject   no group does
 */
import { evaluate, permit, reject, dunno } from './decision.js';
import type { Decision, Identity } from './types.js';

export interface GroupRights {
  readonly name: string;
  readonly read: readonly string[];
  readonly post: readonly string[];
}

export function principalMatches(principal: string, identity: Identity): boolean {
  if (principal === 'anonymous') return identity.kind === 'anonymous' || identity.kind === 'none';
  if (identity.kind !== 'user') return false;
  if (principal === 'authenticated') return true;
  if (principal.startsWith('group:')) return identity.groups.includes(principal.slice(6));
  return principal === identity.name;
}

export function decideGroup(groups: ReadonlyMap<string, GroupRights>, identity: Identity, right: 'read' | 'post', name: string): Decision {
  const group = groups.get(name.toLowerCase());
  return evaluate(
    [
      { name: 'group.unknown', check: () => (group ? dunno() : reject(`no such newsgroup ${name}`)) },
      {
        name: `group.${right}`,
        check: () => {
          const hit = group![right].find((p) => principalMatches(p, identity));
          return hit ? permit(`${name}: ${right} granted to ${hit}`) : dunno();
        },
      },
    ],
    null,
    // Same words as group.unknown when reading, so a hidden group cannot be told from a missing one.
    { rule: 'group.default', reason: right === 'read' ? `no such newsgroup ${name}` : `posting to ${name} is not allowed` },
  );
}

export function readableGroups(groups: ReadonlyMap<string, GroupRights>, identity: Identity): string[] {
  return [...groups.values()].filter((g) => g.read.some((p) => principalMatches(p, identity))).map((g) => g.name);
}

export function mayPostSomewhere(groups: ReadonlyMap<string, GroupRights>, identity: Identity): boolean {
  return [...groups.values()].some((g) => g.post.some((p) => principalMatches(p, identity)));
}

/** May this identity begin a POST (340) at all? */
export function decidePostCommand(groups: ReadonlyMap<string, GroupRights>, identity: Identity): Decision {
  return evaluate(
    [{ name: 'nntp.post_somewhere', check: () => (mayPostSomewhere(groups, identity) ? permit('identity may post to some group') : dunno()) }],
    null,
    { rule: 'nntp.post_not_allowed', reason: 'identity may not post to any group' },
  );
}

/**
 * Could this session post now or after logging in? What the NNTP greeting says (RFC 3977 §5.1.1: 200 or 201),
 * as INN does: readers such as tin decide from the greeting (and from the posting flag of LIST ACTIVE, see
 * groupPostableAfterLogin) whether to offer posting at all, before they authenticate. True when the identity
 * may post somewhere, or it has not logged in yet and some group's post list names a principal a user can match
 * (anything but `anonymous`). A logged-in user who may not post is told 201 by MODE READER. Says nothing about
 * which groups; POST and every group are still decided per identity.
 */
export function mayPostAfterLogin(groups: ReadonlyMap<string, GroupRights>, identity: Identity): boolean {
  return [...groups.values()].some((g) => postableAfterLogin(g, identity));
}

/** The same for one group: LIST ACTIVE's posting flag (y) for a reader who has not logged in yet. */
export function groupPostableAfterLogin(groups: ReadonlyMap<string, GroupRights>, identity: Identity, name: string): boolean {
  const g = groups.get(name.toLowerCase());
  return g !== undefined && postableAfterLogin(g, identity);
}

function postableAfterLogin(g: GroupRights, identity: Identity): boolean {
  if (g.post.some((p) => principalMatches(p, identity))) return true;
  return identity.kind !== 'user' && g.post.some((p) => p !== 'anonymous');
}
