import { describe, expect, it } from 'vitest';
import { ConnectionSlots, decideArticleSize, decideLineDeadline, decideMessageSize, decidePostRate, decideRecipientCount, decideSessionBudget } from '../../src/policy/limits.js';
import { evaluate, failClosed, permit, reject, dunno, andThen, allow } from '../../src/policy/decision.js';

describe('evaluate', () => {
  it('first non-dunno wins and the trace names every rule consulted', () => {
    const d = evaluate(
      [
        { name: 'a', check: () => dunno('a says nothing') },
        { name: 'b', check: () => reject('b rejects') },
        { name: 'c', check: () => permit('never reached') },
      ],
      null,
      { rule: 'default', reason: 'default deny' },
    );
    expect([d.allow, d.rule]).toEqual([false, 'b']);
    expect(d.trace.map((s) => s.rule)).toEqual(['a', 'b']);
  });

  it('all dunno → the default rejects', () => {
    const d = evaluate([{ name: 'a', check: () => dunno() }], null, { rule: 'x.default', reason: 'nope' });
    expect([d.allow, d.rule]).toEqual([false, 'x.default']);
  });

  it('a rule that throws is a deny (fail closed)', () => {
    const d = evaluate(
      [
        {
          name: 'boom',
          check: () => {
            throw new Error('broken');
          },
        },
        { name: 'later', check: () => permit('would permit') },
      ],
      null,
      { rule: 'default', reason: '' },
    );
    expect([d.allow, d.rule]).toEqual([false, 'boom']);
    expect(d.reason).toMatch(/failing closed/);
  });

  it('failClosed turns exceptions into denies', () => {
    const d = failClosed('svc.phase', () => {
      throw new TypeError('bad');
    });
    expect([d.allow, d.rule]).toEqual([false, 'svc.phase']);
  });

  it('decisions are frozen', () => {
    const d = allow('r', 'ok');
    expect(Object.isFrozen(d)).toBe(true);
    expect(andThen(d, () => allow('s', 'ok')).trace.map((t) => t.rule)).toEqual(['r', 's']);
  });
});

describe('ConnectionSlots', () => {
  it('caps per address and globally, and releases', () => {
    const s = new ConnectionSlots(3, 2);
    expect(s.acquire('127.0.0.20').allow).toBe(true);
    expect(s.acquire('127.0.0.20').allow).toBe(true);
    expect(s.acquire('127.0.0.20').rule).toBe('limits.connections_per_ip');
    expect(s.acquire('127.0.0.21').allow).toBe(true);
    expect(s.acquire('127.0.0.22').rule).toBe('limits.connections');
    s.release('127.0.0.20');
    expect(s.acquire('127.0.0.22').allow).toBe(true);
    s.release('127.0.0.99'); // unknown: no effect, never negative
    expect(s.active).toBe(3);
  });
});

describe('decideLineDeadline', () => {
  it.each([
    [0, 1_000_000, 300, true, 'limits.line_ok'], // no line in progress
    [1_000_000, 1_000_000 + 299_999, 300, true, 'limits.line_ok'],
    [1_000_000, 1_000_000 + 300_000, 300, true, 'limits.line_ok'], // exactly at the deadline: still waited for
    [1_000_000, 1_000_000 + 300_001, 300, false, 'limits.line_deadline'],
    [1_000_000, 1_000_000 + 1_500, 1, false, 'limits.line_deadline'],
  ])('line begun at %i, now %i, deadline %i s → %s (%s)', (since, now, limit, allowed, rule) => {
    const d = decideLineDeadline(since, now, limit);
    expect(d.allow).toBe(allowed);
    expect(d.rule).toBe(rule);
  });
});

describe('decideSessionBudget', () => {
  it.each([
    [{ errors: 1, maxErrors: 10 }, true, 'limits.budget_ok'],
    [{ errors: 9, maxErrors: 10 }, true, 'limits.budget_ok'],
    [{ errors: 10, maxErrors: 10 }, false, 'limits.max_errors'], // the tenth error reply ends the session
    [{ errors: 11, maxErrors: 10 }, false, 'limits.max_errors'],
    [{ loginFailures: 2, maxLoginFailures: 3 }, true, 'limits.budget_ok'],
    [{ loginFailures: 3, maxLoginFailures: 3 }, false, 'limits.max_login_failures'],
    [{ errors: 0, maxErrors: 1, loginFailures: 5, maxLoginFailures: 3 }, false, 'limits.max_login_failures'],
    [{}, true, 'limits.budget_ok'], // nothing counted: nothing spent
  ])('%j → %s (%s)', (facts, allowed, rule) => {
    const d = decideSessionBudget(facts);
    expect([d.allow, d.rule]).toEqual([allowed, rule]);
  });
});

describe('decidePostRate', () => {
  it.each([
    ['ok', true, 'limits.post_rate_ok'],
    ['limited', false, 'limits.posts_per_minute'],
    ['unavailable', false, 'state_store.unavailable'],
  ] as const)('counter %s → %s (%s)', (counter, allowed, rule) => {
    const d = decidePostRate({ counter, limit: 10 });
    expect([d.allow, d.rule]).toEqual([allowed, rule]);
  });
  it('names the limit in the refusal', () => {
    expect(decidePostRate({ counter: 'limited', limit: 4 }).reason).toBe('more than 4 posts per minute');
  });
});

describe('decideRecipientCount (smtp.limits.recipients)', () => {
  it.each([
    ['the first recipient', { count: 0, limit: 100, repeat: false }, true, 'limits.recipients_ok', 'recipient 1 of at most 100'],
    ['the last one allowed', { count: 99, limit: 100, repeat: false }, true, 'limits.recipients_ok', 'recipient 100 of at most 100'],
    ['one over the limit', { count: 100, limit: 100, repeat: false }, false, 'limits.recipients', 'more than 100 recipients in one message'],
    ['a repeat at the limit is no new recipient', { count: 100, limit: 100, repeat: true }, true, 'limits.recipients_ok', 'a recipient the message has already'],
    ['limit 1, a second one', { count: 1, limit: 1, repeat: false }, false, 'limits.recipients', 'more than 1 recipients in one message'],
    ['past the limit (a reload lowered it)', { count: 5, limit: 2, repeat: false }, false, 'limits.recipients', 'more than 2 recipients in one message'],
  ])('%s', (_n, f, allowed, rule, reason) => {
    const d = decideRecipientCount(f);
    expect([d.allow, d.rule, d.reason]).toEqual([allowed, rule, reason]);
  });
});

describe('decideMessageSize (smtp.limits.message_bytes)', () => {
  it.each([
    ['SIZE= under the limit', { stage: 'mail', bytes: 100, limit: 4096 }, true, 'limits.message_size_ok', '100 bytes, within 4096'],
    ['SIZE= at the limit', { stage: 'mail', bytes: 4096, limit: 4096 }, true, 'limits.message_size_ok', '4096 bytes, within 4096'],
    ['SIZE= over the limit', { stage: 'mail', bytes: 5000, limit: 4096 }, false, 'limits.message_bytes', 'declared message size 5000 exceeds 4096'],
    ['SIZE=0', { stage: 'mail', bytes: 0, limit: 4096 }, true, 'limits.message_size_ok', '0 bytes, within 4096'],
    ['DATA at the limit', { stage: 'data', bytes: 4096, limit: 4096 }, true, 'limits.message_size_ok', '4096 bytes, within 4096'],
    ['DATA one byte over', { stage: 'data', bytes: 4097, limit: 4096 }, false, 'limits.message_bytes', 'message of 4097+ bytes exceeds 4096'],
    ['DATA under the session limit, over the server limit (lowered by a reload)', { stage: 'data', bytes: 3000, limit: 4096, overServerLimit: true }, false, 'limits.message_bytes', "message of 3000+ bytes exceeds the server's current limit (lowered by a reload)"],
    ['DATA over both limits: the session limit is named', { stage: 'data', bytes: 5000, limit: 4096, overServerLimit: true }, false, 'limits.message_bytes', 'message of 5000+ bytes exceeds 4096'],
    ['SIZE= under the session limit, over the server limit', { stage: 'mail', bytes: 3000, limit: 4096, overServerLimit: true }, false, 'limits.message_bytes', "declared message size 3000 exceeds the server's current limit (lowered by a reload)"],
    ['DATA under both limits', { stage: 'data', bytes: 3000, limit: 4096, overServerLimit: false }, true, 'limits.message_size_ok', '3000 bytes, within 4096'],
  ] as const)('%s', (_n, f, allowed, rule, reason) => {
    const d = decideMessageSize(f);
    expect([d.allow, d.rule, d.reason]).toEqual([allowed, rule, reason]);
  });
});

describe('decideArticleSize (nntp.limits.article_bytes)', () => {
  it.each([
    ['an article within the limit', { bytes: 1000, limit: 4096 }, true, 'nntp.article_size_ok', '1000 octets, within 4096'],
    ['exactly at the limit', { bytes: 4096, limit: 4096 }, true, 'nntp.article_size_ok', '4096 octets, within 4096'],
    ['one octet over', { bytes: 4097, limit: 4096 }, false, 'nntp.article_bytes', 'article larger than 4096 octets'],
    ['discarded unread by the reader (too big)', { bytes: null, limit: 4096 }, false, 'nntp.article_bytes', 'article larger than 4096 octets'],
  ] as const)('%s', (_n, f, allowed, rule, reason) => {
    const d = decideArticleSize(f);
    expect([d.allow, d.rule, d.reason]).toEqual([allowed, rule, reason]);
  });
});
