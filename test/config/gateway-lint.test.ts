// `check` on the issue-18 keys: a share's notify to a remote address, and nntp.mail_gateway, each warn; local
// readers and the defaults do not; a malformed reader or domain is a config error naming the key.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { lintConfig } from '../../src/config/lint.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gh-gwlint-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const lint = (data: Record<string, unknown>) => lintConfig(parseConfig({ state_dir: 'var', ...data }, 'test.yaml', tmp));
const share = (to: string[]) => ({ smtp: { local_domains: ['local.test'] }, ftp: { shares: [{ path: '/dropbox', dir: 'ftp/dropbox', rights: { alice: ['write'] }, notify: { to, digest_s: 60 } }] } });

describe('check: upload notices and mail-to-news', () => {
  it('warns when notices leave the server, not for local readers', () => {
    expect(lint(share(['alice', 'group:staff', 'bob@local.test'])).map((w) => w.id)).not.toContain('ftp.share_notify_remote');
    const w = lint(share(['alice', 'lead@example.net'])).find((x) => x.id === 'ftp.share_notify_remote');
    expect(w?.key).toBe('ftp.shares.0.notify.to');
    expect(w?.value).toContain('lead@example.net');
  });

  it('warns when the mail gateway is on', () => {
    expect(lint({}).map((w) => w.id)).not.toContain('nntp.mail_gateway');
    const w = lint({ nntp: { mail_gateway: { domain: 'news.office.test' } } }).find((x) => x.id === 'nntp.mail_gateway');
    expect(w?.key).toBe('nntp.mail_gateway.domain');
  });

  it('refuses malformed readers, digest windows and domains', () => {
    expect(() => lint(share(['Bad Name']))).toThrow(/notify/);
    expect(() => lint(share([]))).toThrow(/notify/);
    expect(() => lint({ ...share(['alice']), ftp: { shares: [{ path: '/d', dir: 'ftp/d', rights: {}, notify: { to: ['alice'], digest_s: 0 } }] } })).toThrow(/digest_s/);
    expect(() => lint({ nntp: { mail_gateway: { domain: 'News.Office.Test.' } } })).toThrow(/mail_gateway/);
  });
});
