/*
 * Issue 15 (11): tin (Debian's tin 2.6) offers posting to a reader who has not logged in yet when a login could
 * post, and posts after AUTHINFO. Driven in batch mode over NNTPS: `-o` posts the articles postponed in
 * ~/.tin/postponed.articles and exits; no `-A`, so tin logs in only when the server asks (480 to POST) with the
 * credentials in ~/.newsauth. The group is readable anonymously, so nothing else makes tin log in first.
 * What tin 2.6 looks at (measured): CAPABILITIES must list POST before login (without it tin silently posts
 * nothing), POST must answer 480 (440 would be final); the greeting/MODE READER 200 and the LIST ACTIVE `y`
 * flag tell older readers the same. Skipped, and says so, when tin is not installed (CI: apt-get install tin).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { RawClient } from './client.js';
import { installed } from '../helpers/tools.js';

const hasTin = installed('tin', ['-V']);

let t: TestGatehouse;
const homes: string[] = [];

beforeAll(async () => {
  if (!hasTin) return;
  t = await startGatehouse(
    {
      nntp: {
        listen: '127.0.0.1:0',
        implicit_tls_listen: '127.0.0.1:0',
        groups: [
          { name: 'public.news', read: ['anonymous', 'authenticated'], post: ['authenticated'] },
          { name: 'public.archive', read: ['anonymous', 'authenticated'], post: [] },
        ],
      },
    },
    [{ name: 'alice', password: PASSWORD }],
  );
});

afterAll(async () => {
  await t?.stop();
  for (const h of homes) fs.rmSync(h, { recursive: true, force: true });
});

function tinPostPostponed(group: string, subject: string): Promise<string> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-tin-post-'));
  homes.push(home);
  fs.writeFileSync(path.join(home, '.newsauth'), `127.0.0.1 ${PASSWORD} alice\n`, { mode: 0o600 });
  fs.writeFileSync(path.join(home, '.newsrc'), `${group}:\n`);
  fs.mkdirSync(path.join(home, '.tin'));
  fs.writeFileSync(
    path.join(home, '.tin', 'postponed.articles'),
    `From tin-postponed-article Sun Dec  6 03:00:00 2026\nFrom: Alice <alice@gatehouse.test>\nNewsgroups: ${group}\nSubject: ${subject}\n\nposted by tin after AUTHINFO\n\n`,
  );
  const args = ['-r', '-T', '-k', '-g', '127.0.0.1', '-p', String(t.port('nntp', 'implicit_tls')), '-o', '-f', path.join(home, '.newsrc')];
  return new Promise((resolve) => {
    execFile('tin', args, { env: { ...process.env, HOME: home, TERM: 'dumb' }, timeout: 45_000 }, (_err, stdout, stderr) => resolve((stdout + stderr).replace(/\r/g, '\n')));
  });
}

describe.skipIf(!hasTin)('tin posts after AUTHINFO', () => {
  it('before login the server offers posting: 200, CAPABILITIES POST, LIST ACTIVE y, POST 480', async () => {
    const c = await RawClient.connect(t.port('nntp', 'implicit_tls'), { tls: true });
    try {
      expect(await c.line()).toMatch(/^200 /);
      expect(await c.cmd('CAPABILITIES')).toMatch(/^101 /);
      expect(await c.block()).toContain('POST');
      expect(await c.cmd('LIST ACTIVE')).toMatch(/^215 /);
      expect((await c.block()).sort()).toEqual(['public.archive 0 1 n', 'public.news 0 1 y']);
      expect(await c.cmd('POST')).toMatch(/^480 /);
    } finally {
      c.close();
    }
  });

  it('tin -o posts a postponed article: POST, 480, AUTHINFO from ~/.newsauth, POST again, 240', async () => {
    const out = await tinPostPostponed('public.news', 'tin posts after login');
    expect(out).toMatch(/Authorized for user: alice/);
    expect(out).toMatch(/Article posted: <[^>]+>/);
    const posted = t.decisions.filter((d) => d.service === 'nntp' && d.phase === 'post' && d.verdict === 'allow');
    expect(posted.some((d) => d.user === 'alice')).toBe(true);
    const c = await RawClient.connect(t.port('nntp'));
    try {
      await c.line();
      expect(await c.cmd('GROUP public.news')).toMatch(/^211 1 1 1 /);
      expect(await c.cmd('XHDR Subject 1')).toMatch(/^221 /);
      expect(await c.block()).toEqual(['1 tin posts after login']);
    } finally {
      c.close();
    }
  });
});
