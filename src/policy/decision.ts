/*
 * NAME
 *   policy/decision — ordered rule lists with Postfix's permit / reject / dunno semantics.
 *
 * DESCRIPTION
 *   A check is a list of named rules. Each rule looks at the facts and permits, rejects or says nothing.
 *   The first rule that is not `dunno` decides; when all say nothing the list's default (always a reject
 *   in this codebase: there is no default permit) decides. A rule that throws is a reject: the core fails
 *   closed, and the trace names the rule that broke.
 */
import type { Decision, Outcome, RuleStep } from './types.js';

export interface RuleResult {
  readonly outcome: Outcome;
  readonly reason: string;
}

export interface Rule<F> {
  readonly name: string;
  readonly check: (facts: F) => RuleResult;
}

export const permit = (reason: string): RuleResult => ({ outcome: 'permit', reason });
export const reject = (reason: string): RuleResult => ({ outcome: 'reject', reason });
export const dunno = (reason = 'not applicable'): RuleResult => ({ outcome: 'dunno', reason });

export function makeDecision(allow: boolean, rule: string, reason: string, trace: readonly RuleStep[]): Decision {
  return Object.freeze({ allow, rule, reason, trace: Object.freeze([...trace]) }) as unknown as Decision;
}

export function deny(rule: string, reason: string, trace: readonly RuleStep[] = []): Decision {
  return makeDecision(false, rule, reason, [...trace, { rule, outcome: 'reject', reason }]);
}

export function allow(rule: string, reason: string, trace: readonly RuleStep[] = []): Decision {
  return makeDecision(true, rule, reason, [...trace, { rule, outcome: 'permit', reason }]);
}

/** Walk the rules in order; the first that is not dunno decides, otherwise `fallback` rejects. */
export function evaluate<F>(rules: readonly Rule<F>[], facts: F, fallback: { rule: string; reason: string }): Decision {
  const trace: RuleStep[] = [];
  for (const rule of rules) {
    let result: RuleResult;
    try {
      result = rule.check(facts);
    } catch (err) {
      const reason = `rule failed (${err instanceof Error ? err.message : String(err)}); failing closed`;
      trace.push({ rule: rule.name, outcome: 'reject', reason });
      return makeDecision(false, rule.name, reason, trace);
    }
    trace.push({ rule: rule.name, outcome: result.outcome, reason: result.reason });
    if (result.outcome !== 'dunno') return makeDecision(result.outcome === 'permit', rule.name, result.reason, trace);
  }
  trace.push({ rule: fallback.rule, outcome: 'reject', reason: fallback.reason });
  return makeDecision(false, fallback.rule, fallback.reason, trace);
}

/** Chain two decisions: the second only counts when the first allowed; the traces are joined. */
export function andThen(first: Decision, next: () => Decision): Decision {
  if (!first.allow) return first;
  const second = next();
  return makeDecision(second.allow, second.rule, second.reason, [...first.trace, ...second.trace]);
}

/** Run a decision function and turn any exception into a deny (fail closed). */
export function failClosed(rule: string, fn: () => Decision): Decision {
  try {
    return fn();
  } catch (err) {
    return deny(rule, `policy error (${err instanceof Error ? err.message : String(err)}); failing closed`);
  }
}
