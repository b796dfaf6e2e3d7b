/*
 * A feeding peer's login on a plain connection where logins need TLS (the innd/innfeed case): the policy core
 * decides the secret (policy/feed decidePeerSecret) and the refusal is recorded exactly once, as feed.login_secret
 * with the core's reason; the secret never reaches the users' password check. innfeed itself logs in with the
 * right secret in test/nntp/inn-peering.test.ts; here a raw client sends the wrong ones.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { RawClient, runPython } from './client.js';

const SECRET = 'peer-secret-0123456789';

describe('a plain peer login is decided by the policy core', () => {
  let t: TestGatehouse;
  let tmp: string;

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-peer-login-'));
    fs.writeFileSync(path.join(tmp, 'lab3.secret'), `${SECRET}\n`, { mode: 0o600 });
    fs.writeFileSync(path.join(tmp, 'lab4.secret'), '', { mode: 0o600 }); // no secret in it: nothing can match
    t = await startGatehouse({
      nntp: {
        groups: [{ name: 'lab.results', read: ['authenticated'], post: ['authenticated'] }],
        peers: [
          { name: 'lab3', host: '127.0.0.20', tls: false, groups: ['*'], direction: 'in', password_file: path.join(tmp, 'lab3.secret') },
          { name: 'lab4', host: '127.0.0.30', tls: false, groups: ['*'], direction: 'in', password_file: path.join(tmp, 'lab4.secret') },
        ],
      },
    });
  });
  afterAll(async () => {
    await t?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  async function login(local: string, user: string, password: string): Promise<{ reply: string; stream: string }> {
    const c = await RawClient.connect(t.port('nntp'), { localAddress: local });
    try {
      expect(await c.line()).toMatch(/^20[01] /);
      const reply = await c.login(user, password);
      return { reply, stream: await c.cmd('MODE STREAM') };
    } finally {
      c.close();
    }
  }

  it.each([
    ['a wrong secret', '127.0.0.20', 'lab3', 'wrong-secret', 'wrong secret for peer lab3'],
    ['a peer whose password_file holds no secret', '127.0.0.30', 'lab4', 'anything', 'the secret of peer lab4 cannot be read (password_file)'],
  ])('%s: 481, one feed.login_secret record, no password check', async (_n, local, user, password, reason) => {
    const from = t.decisions.length;
    expect(await login(local, user, password)).toEqual({ reply: expect.stringMatching(/^481 /), stream: expect.stringMatching(/^502/) });
    const recs = t.decisions.slice(from).filter((d) => d.rule === 'feed.login_secret');
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ service: 'nntp', phase: 'feed_login', verdict: 'deny', ip: local, reason });
    expect(t.decisions.slice(from).some((d) => d.phase === 'authenticate')).toBe(false);
  });

  it('a user logging in without TLS (nntplib): 483, one auth.tls_required record; from a peer address it is the peer rule', async () => {
    const from = t.decisions.length;
    const r = await runPython(
      `
s = nntplib.NNTP('127.0.0.1', PORT, usenetrc=False)
try:
    s.login('alice', PASSWORD)
    print('UNEXPECTED-LOGIN')
except nntplib.NNTPError as e:
    print('REFUSED', str(e))
s.quit()
`,
      { PORT: String(t.port('nntp')), PASSWORD: 'not-sent-anyway' },
    );
    expect(r.stdout.trim()).toBe('REFUSED 483 Encryption required: use STARTTLS first');
    const mine = t.decisions.slice(from).filter((d) => d.verdict === 'deny');
    expect(mine.map((d) => [d.phase, d.rule, d.ip])).toEqual([['authenticate', 'auth.tls_required', '127.0.0.1']]);
    // from a listed peer's address the peer rule answers (feed.login_peer), not the users' TLS rule (login()'s
    // MODE STREAM afterwards is refused as feed.peer_auth: not a login decision)
    const before = t.decisions.length;
    expect((await login('127.0.0.20', 'alice', 'x')).reply).toMatch(/^483 /);
    const logins = t.decisions.slice(before).filter((d) => d.phase === 'feed_login' || d.phase === 'authenticate');
    expect(logins.map((d) => [d.phase, d.verdict, d.rule])).toEqual([['feed_login', 'deny', 'feed.login_peer']]);
  });

  it('the right secret from the peer address: 281 and the feed is open; no refusal recorded', async () => {
    const from = t.decisions.length;
    expect(await login('127.0.0.20', 'lab3', SECRET)).toEqual({ reply: expect.stringMatching(/^281 /), stream: expect.stringMatching(/^203/) });
    expect(t.decisions.slice(from).filter((d) => d.verdict === 'deny')).toEqual([]);
  });
});
