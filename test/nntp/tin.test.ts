/*
 * tin (Debian's tin 2.6), the reader RFC 8143 users actually run, over NNTPS in its batch mode: `-S` saves
 * new news to ~/News after TLS (-T, -k for the self-signed certificate) and AUTHINFO from ~/.newsauth (-A).
 * Skipped, and says so, when tin is not installed (CI: apt-get install tin).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { GROUPS, secureLogin } from './client.js';
import { installed } from '../helpers/tools.js';

const hasTin = installed('tin', ['-V']);

let t: TestGatehouse;
const homes: string[] = [];

beforeAll(async () => {
  if (!hasTin) return;
  t = await startGatehouse(
    { nntp: { listen: '127.0.0.1:0', implicit_tls_listen: '127.0.0.1:0', groups: GROUPS } },
    [
      { name: 'alice', password: PASSWORD, groups: ['staff'] },
      { name: 'bob', password: PASSWORD },
    ],
  );
  const c = await secureLogin(t.port('nntp'), 'alice', PASSWORD);
  expect((await c.post(['From: Alice <alice@gatehouse.test>', 'Newsgroups: office.general,office.staff', 'Subject: hello tin', '', 'tin body line', '.dotted']))[1]).toMatch(/^240/);
  expect((await c.post(['From: Alice <alice@gatehouse.test>', 'Newsgroups: office.staff', 'Subject: staff only', '', 'secret']))[1]).toMatch(/^240/);
  c.close();
});

afterAll(async () => {
  await t?.stop();
  for (const h of homes) fs.rmSync(h, { recursive: true, force: true });
});

/** Run `tin -S` as `user` and return the saved articles, keyed by group folder and number. */
function tinSave(user: string): Promise<{ code: number; saved: Map<string, string>; out: string }> {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-tin-'));
  homes.push(home);
  fs.writeFileSync(path.join(home, '.newsauth'), `127.0.0.1 ${PASSWORD} ${user}\n`, { mode: 0o600 });
  fs.writeFileSync(path.join(home, '.newsrc'), 'office.general:\noffice.staff:\n');
  const args = ['-r', '-T', '-k', '-g', '127.0.0.1', '-p', String(t.port('nntp', 'implicit_tls')), '-A', '-S', '-v', '-q', '-f', path.join(home, '.newsrc')];
  return new Promise((resolve) => {
    execFile('tin', args, { env: { ...process.env, HOME: home }, timeout: 30_000 }, (err, stdout, stderr) => {
      const saved = new Map<string, string>();
      const news = path.join(home, 'News');
      const walk = (dir: string) => {
        if (!fs.existsSync(dir)) return;
        for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
          const p = path.join(dir, e.name);
          if (e.isDirectory()) walk(p);
          else saved.set(path.relative(news, p), fs.readFileSync(p, 'latin1'));
        }
      };
      walk(news);
      resolve({ code: err ? 1 : 0, saved, out: stdout + stderr });
    });
  });
}

describe.skipIf(!hasTin)('tin over NNTPS', () => {
  it('bob reads office.general and never sees office.staff, not even in Newsgroups or Xref', async () => {
    const r = await tinSave('bob');
    expect(r.out).toContain('Authorized for user: bob');
    expect([...r.saved.keys()]).toEqual(['office/general/1']);
    const art = r.saved.get('office/general/1')!;
    expect(art).toContain('Subject: hello tin');
    expect(art).toContain('\ntin body line\n.dotted');
    expect(art).toContain('Newsgroups: office.general\n');
    expect(art).toMatch(/Xref: gatehouse\.test office\.general:1\n/);
    expect(art).not.toContain('office.staff');
  });

  it('alice reads both groups', async () => {
    const r = await tinSave('alice');
    expect([...r.saved.keys()].sort()).toEqual(['office/general/1', 'office/staff/1', 'office/staff/2']);
    expect(r.saved.get('office/staff/2')).toContain('secret');
  });
});
