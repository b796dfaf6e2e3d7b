/*
 * policy/smtp, table-driven: facts → decision (rule, verdict, reason) for the early talker and the MAIL/RCPT
 * parameters EHLO announces.
 */
import { describe, expect, it } from 'vitest';
import { decideGreeting, decideParameters, type ParameterFacts } from '../../src/policy/smtp.js';

describe('decideGreeting (smtp.pregreet)', () => {
  const rows: Array<[string, { talkedBeforeGreeting: boolean; greetPauseMs: number }, boolean, string, string]> = [
    ['talked during a 400 ms pause', { talkedBeforeGreeting: true, greetPauseMs: 400 }, false, 'smtp.pregreet', 'client talked before the greeting (greet_pause_ms 400)'],
    ['waited for the greeting', { talkedBeforeGreeting: false, greetPauseMs: 400 }, true, 'smtp.greeting_ok', 'the client waited for the greeting'],
    ['no pause, no early talk', { talkedBeforeGreeting: false, greetPauseMs: 0 }, true, 'smtp.greeting_ok', 'the client waited for the greeting'],
  ];
  it.each(rows)('%s', (_n, f, allowed, rule, reason) => {
    const d = decideGreeting(f);
    expect([d.allow, d.rule, d.reason]).toEqual([allowed, rule, reason]);
    expect(d.trace.at(-1)?.rule).toBe(rule);
  });
});

describe('decideParameters (esmtp.parameter)', () => {
  const rows: Array<[string, ParameterFacts, boolean, string, string | null]> = [
    ['MAIL without parameters', { stage: 'mail', params: false }, true, 'esmtp.parameters_ok', null],
    ['MAIL, parameters undefined', { stage: 'mail', params: undefined }, true, 'esmtp.parameters_ok', null],
    ['MAIL SIZE BODY AUTH', { stage: 'mail', params: { SIZE: '100', BODY: '8BITMIME', AUTH: '<>' } }, true, 'esmtp.parameters_ok', null],
    ['MAIL body=7bit (case)', { stage: 'mail', params: { BODY: '7bit' } }, true, 'esmtp.parameters_ok', null],
    ['MAIL SIZE of 20 digits', { stage: 'mail', params: { SIZE: '9'.repeat(20) } }, true, 'esmtp.parameters_ok', null],
    ['MAIL SIZE of 21 digits', { stage: 'mail', params: { SIZE: '9'.repeat(21) } }, false, 'esmtp.parameter', 'SIZE'],
    ['MAIL SIZE without a value', { stage: 'mail', params: { SIZE: true } }, false, 'esmtp.parameter', 'SIZE'],
    ['MAIL AUTH without a value', { stage: 'mail', params: { AUTH: true } }, false, 'esmtp.parameter', 'AUTH'],
    ['MAIL BODY=BINARYMIME', { stage: 'mail', params: { BODY: 'BINARYMIME' } }, false, 'esmtp.parameter', 'BODY'],
    ['MAIL SMTPUTF8 (not announced)', { stage: 'mail', params: { SMTPUTF8: true } }, false, 'esmtp.parameter', 'SMTPUTF8'],
    ['MAIL RET (DSN not announced)', { stage: 'mail', params: { RET: 'HDRS' } }, false, 'esmtp.parameter', 'RET'],
    ['MAIL unknown keyword, lower case', { stage: 'mail', params: { foo: 'bar' } }, false, 'esmtp.parameter', 'FOO'],
    ['MAIL: the first unannounced one is named', { stage: 'mail', params: { SIZE: '1', ENVID: 'x', FOO: 'y' } }, false, 'esmtp.parameter', 'ENVID'],
    ['RCPT without parameters', { stage: 'rcpt', params: false }, true, 'esmtp.parameters_ok', null],
    ['RCPT NOTIFY (DSN not announced)', { stage: 'rcpt', params: { NOTIFY: 'NEVER' } }, false, 'esmtp.parameter', 'NOTIFY'],
    ['RCPT SIZE (a MAIL parameter)', { stage: 'rcpt', params: { SIZE: '100' } }, false, 'esmtp.parameter', 'SIZE'],
  ];
  it.each(rows)('%s', (_n, f, allowed, rule, parameter) => {
    const { decision: d, parameter: p } = decideParameters(f);
    expect([d.allow, d.rule, p]).toEqual([allowed, rule, parameter]);
    if (!allowed) expect(d.reason).toBe(`parameter ${parameter} was not announced in EHLO`);
  });
});
