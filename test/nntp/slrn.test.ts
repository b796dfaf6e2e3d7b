/*
 * Issue 15 (11, and 10's LIST OVERVIEW.FMT): slrn 1.0 (Debian) over NNTPS, logging in with nnrpaccess, driven on
 * a pseudo-terminal by test/nntp/slrn-drive.py. It must say "Posting ok", offer posting (P asks for the
 * newsgroup instead of "not allowed"), and keep XOVER on: slrn switches XOVER off when LIST OVERVIEW.FMT is not
 * the RFC 2980 list (Bytes:/Lines:, which RFC 3977 §8.4.2 allows). Skipped, and says so, when slrn is not
 * installed (CI: apt-get install slrn).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PASSWORD, startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';
import { installed } from '../helpers/tools.js';

const hasSlrn = installed('slrn');
const driver = path.join(path.dirname(fileURLToPath(import.meta.url)), 'slrn-drive.py');

let t: TestGatehouse;

beforeAll(async () => {
  if (!hasSlrn) return;
  t = await startGatehouse(
    { nntp: { listen: '127.0.0.1:0', implicit_tls_listen: '127.0.0.1:0', groups: [{ name: 'public.news', read: ['anonymous', 'authenticated'], post: ['authenticated'] }] } },
    [{ name: 'alice', password: PASSWORD }],
  );
});

afterAll(async () => {
  await t?.stop();
});

describe.skipIf(!hasSlrn)('slrn over NNTPS', () => {
  it('logs in, says posting is ok, offers posting, keeps XOVER on', async () => {
    const out = await new Promise<string>((resolve) => {
      execFile('python3', [driver, String(t.port('nntp', 'implicit_tls')), PASSWORD], { timeout: 60_000 }, (_e, stdout, stderr) => resolve(stdout + stderr));
    });
    const [screen = '', debug = ''] = out.split('----DEBUG----');
    if (process.env.SLRN_DEBUG) console.log(out);
    expect(debug).toMatch(/<200 Posting allowed/);
    expect(debug).toMatch(/<281 /);
    expect(screen).toMatch(/Posting ok/);
    expect(screen).not.toMatch(/XOVER support disabled/);
    // P goes on to posting (the newsgroup prompt, or the confirmation asked first) instead of "not allowed"
    expect(screen).toMatch(/Newsgroup:|want to post\?/);
    expect(screen).not.toMatch(/not allowed/i);
    expect(t.decisions.some((d) => d.service === 'nntp' && d.phase === 'authenticate' && d.verdict === 'allow')).toBe(true);
  }, 90_000);
});
