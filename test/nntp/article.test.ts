/* POST article checks and injection (RFC 5536/5537), as a table. */
import { describe, expect, it } from 'vitest';
import { bodyLines, parseHead, prepareArticle, type ReceivedLine } from '../../src/nntp/article.js';
import { parseNntpDate } from '../../src/nntp/commands.js';

const ctx = { hostname: 'gh.test', user: 'alice', ip: '127.0.0.1', session: 's1', now: new Date('2026-12-01T10:00:00Z') };
const lines = (...ls: string[]): ReceivedLine[] => ls.map((l) => ({ line: Buffer.from(l, 'latin1'), end: 'crlf' }));
const base = ['From: a@x', 'Subject: s', 'Newsgroups: office.general'];

describe('prepareArticle refuses', () => {
  const cases: [string, ReceivedLine[], RegExp][] = [
    ['no From', lines('Subject: s', 'Newsgroups: g', '', 'b'), /missing From/],
    ['no Subject', lines('From: a@x', 'Newsgroups: g', '', 'b'), /missing Subject/],
    ['empty Newsgroups', lines('From: a@x', 'Subject: s', 'Newsgroups:  ', '', 'b'), /missing Newsgroups/],
    ['bad group name', lines('From: a@x', 'Subject: s', 'Newsgroups: Bad Group', '', 'b'), /malformed Newsgroups/],
    ['duplicate Subject', lines(...base, 'Subject: t', '', 'b'), /duplicate Subject/],
    ['duplicate newsgroups (case)', lines(...base, 'NEWSGROUPS: office.staff', '', 'b'), /duplicate/],
    ['continuation first', lines(' folded', ...base, '', 'b'), /continuation/],
    ['no colon', lines(...base, 'garbage', '', 'b'), /malformed header/],
    ['space in field name', lines(...base, 'X Bad: y', '', 'b'), /malformed header/],
    ['bad Message-ID', lines(...base, 'Message-ID: <no-at-sign>', '', 'b'), /Message-ID/],
    ['bad Date', lines(...base, 'Date: yesterday-ish', '', 'b'), /Date/],
    ['bare CR in header', lines(...base, 'X-A: a\rb', '', 'b'), /bare CR/],
    ['bare CR in body', lines(...base, '', 'a\rb'), /bare CR/],
    ['NUL in header', lines(...base, 'X-A: a\0b', '', 'b'), /NUL/],
    ['bare LF header line', [...lines('From: a@x', 'Subject: s'), { line: Buffer.from('Newsgroups: g'), end: 'lf' }, ...lines('', 'b')], /bare LF/],
  ];
  for (const [what, input, reason] of cases) {
    it(what, () => {
      const r = prepareArticle(input, ctx);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.reason).toMatch(reason);
    });
  }
});

describe('prepareArticle injects', () => {
  it('adds Path, Message-ID, Date, Injection-*; strips owned headers; keeps the body', () => {
    const r = prepareArticle(lines(...base.slice(0, 2), 'Newsgroups: office.general, lab.announce ,office.general', 'Xref: x g:1', 'Injection-Info: forged', 'Path: a!b', 'References: <r@x>', '\tcontinued', '', '.', '', 'end '), ctx);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.groups).toEqual(['office.general', 'lab.announce']);
    const h = r.head.split('\r\n');
    expect(h[0]).toBe('Path: gh.test!not-for-mail');
    expect(h.filter((l) => /^(xref|path|injection-info):/i.test(l))).toEqual(['Path: gh.test!not-for-mail', 'Injection-Info: gh.test; posting-account="alice"; posting-host="127.0.0.1"; logging-data="s1"']);
    expect(h).toContain('Date: Tue, 01 Dec 2026 10:00:00 +0000');
    expect(h).toContain('Injection-Date: Tue, 01 Dec 2026 10:00:00 +0000');
    expect(h).toContain(`Message-ID: ${r.messageId}`);
    expect(parseHead(r.head).get('references')).toBe('<r@x> continued');
    expect(bodyLines(r.article)).toEqual(['.', '', 'end ']);
    expect(r.lines).toBe(3);
  });

  it('keeps an anonymous poster anonymous (no posting-account)', () => {
    const r = prepareArticle(lines(...base, '', 'b'), { ...ctx, user: null });
    expect(r.ok && r.head).not.toContain('posting-account');
  });
});

describe('parseNntpDate', () => {
  it('reads yyyymmdd and yymmdd as UTC, months 1-based', () => {
    expect(parseNntpDate('20261201', '103000')).toBe(Date.UTC(2026, 11, 1, 10, 30, 0));
    expect(parseNntpDate('261201', '000000', new Date('2026-12-01T00:00:00Z'))).toBe(Date.UTC(2026, 11, 1));
    expect(parseNntpDate('991231', '000000', new Date('2026-12-01T00:00:00Z'))).toBe(Date.UTC(1999, 11, 31));
    expect(parseNntpDate('20261301', '000000')).toBeNull();
    expect(parseNntpDate('20261201', '250000')).toBeNull();
  });
});
