/*
 * The status page in headless Chromium (Debian `chromium`, driven by playwright-core): the page loads,
 * shows the SMTP listener, and shows live the relay denial a real SMTP client (Python smtplib from the
 * "remote" loopback address 127.0.0.20) causes after the page opened. The charts (last hour, per minute)
 * show exactly the SMTP denials and auth failures the decision log holds, and the SMTP session the test keeps
 * open. Login throttles started after it opened show in their table. A screenshot is saved under
 * test/artifacts/. Skipped, with the reason, when /usr/bin/chromium is absent.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';
import { startGatehouse, type TestGatehouse } from '../helpers/gatehouse.js';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = fs.existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) console.warn(`status-page browser test skipped: ${CHROMIUM} is absent (apt-get install -y chromium)`);
const ARTIFACTS = path.join(ROOT, 'test/artifacts');
const run = promisify(execFile);

describe.skipIf(!HAVE_CHROMIUM)('status page in headless Chromium', () => {
  let t: TestGatehouse | undefined;
  let ctx: BrowserContext | undefined;
  let profile: string | undefined;

  beforeAll(async () => {
    t = await startGatehouse({ ftp: { enabled: false }, nntp: { enabled: false }, metrics: { listen: '127.0.0.1:0' }, auth: { bcrypt_cost: 10, delay: { base_ms: 1, max_ms: 2 } } });
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-chromium-'));
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: 30_000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  }, 60_000);

  afterAll(async () => {
    await ctx?.close().catch(() => {});
    await t?.stop();
    if (profile) fs.rmSync(profile, { recursive: true, force: true });
  });

  it('loads, shows the listeners and a relay denial caused after it opened, and saves a screenshot', async () => {
    const page = ctx!.pages()[0] ?? (await ctx!.newPage());
    await page.setViewportSize({ width: 1600, height: 900 }); // a projector-sized window
    page.setDefaultTimeout(15_000);
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    const url = `http://127.0.0.1:${t!.gh.ops!.address.port}/`;
    const resp = await page.goto(url);
    expect(resp?.status()).toBe(200);
    await expect.poll(() => page.textContent('#conn'), { timeout: 15_000 }).toBe('live');
    await expect.poll(() => page.textContent('#listeners tbody'), { timeout: 15_000 }).toContain(`127.0.0.1:${t!.port('smtp')}`);

    const py = `import smtplib
s = smtplib.SMTP('127.0.0.1', ${t!.port('smtp')}, source_address=('127.0.0.20', 0), timeout=10)
s.ehlo('probe.test')
s.mail('probe@example.org')
code, msg = s.rcpt('victim@example.net')
print(code)
s.quit()`;
    const { stdout } = await run('python3', ['-c', py], { timeout: 20_000 });
    expect(stdout.trim()).toMatch(/^5\d\d$/);

    const row = page.locator('#decisions tbody tr.deny', { hasText: 'victim@example.net' }).first();
    await row.waitFor({ state: 'visible', timeout: 15_000 });
    const text = (await row.textContent()) ?? '';
    expect(text).toContain('127.0.0.20');
    expect(text).toContain('rcpt');
    const rule = await row.getAttribute('data-rule');
    expect(rule).toMatch(/^relay\./);
    expect(t!.decisions.some((d) => d.rule === rule && d.verdict === 'deny' && d.ip === '127.0.0.20')).toBe(true);

    // An auth failure (after STARTTLS, an unknown user) and a session held open: the charts must show them.
    const auth = `import smtplib, ssl
s = smtplib.SMTP('127.0.0.1', ${t!.port('smtp')}, source_address=('127.0.0.20', 0), timeout=10)
s.starttls(context=ssl._create_unverified_context())
s.ehlo('probe.test')
try:
    s.login('nobody', 'not-the-password-at-all')
    print('accepted')
except smtplib.SMTPAuthenticationError as e:
    print(e.smtp_code)
s.quit()`;
    const authOut = await run('python3', ['-c', auth], { timeout: 20_000 });
    expect(authOut.stdout.trim()).toBe('535');
    const held = net.connect({ host: '127.0.0.1', port: t!.port('smtp') });
    held.on('error', () => {});
    try {
      await new Promise<void>((resolve, reject) => {
        held.once('data', () => resolve());
        held.once('error', reject);
      });
      const legend = (chart: string, series: string, attr = 'data-value') =>
        page.getAttribute(`#chart-${chart} .legend span[data-series="${series}"]`, attr, { timeout: 15_000 }).then(Number);
      const smtpDenials = () => t!.decisions.filter((d) => d.service === 'smtp' && d.verdict === 'deny').length;
      const authFailures = () => t!.decisions.filter((d) => d.rule === 'auth.bad_credentials').length;
      expect(authFailures()).toBeGreaterThanOrEqual(1);
      await expect.poll(async () => (await legend('smtp', 'smtp.deny')) === smtpDenials() && smtpDenials() >= 1, { timeout: 15_000 }).toBe(true);
      await expect.poll(async () => (await legend('auth', 'auth_failures')) === authFailures(), { timeout: 15_000 }).toBe(true);
      await expect.poll(() => legend('sessions', 'sessions.smtp', 'data-max'), { timeout: 15_000 }).toBeGreaterThanOrEqual(1);
      expect(await legend('smtp', 'smtp.allow')).toBe(t!.decisions.filter((d) => d.service === 'smtp' && d.verdict === 'allow').length);
      // drawn, not only counted: a red bar for this minute's SMTP denials, a line for the sessions
      expect(await page.locator('#chart-smtp svg rect[data-series="smtp.deny"]').count()).toBeGreaterThanOrEqual(1);
      expect(await page.locator('#chart-auth svg rect[data-series="auth_failures"]').count()).toBeGreaterThanOrEqual(1);
      expect(await page.locator('#chart-sessions svg polyline[data-series="sessions.smtp"]').count()).toBe(1);
      expect(await page.locator('#charts figure.chart').count()).toBe(6);
    } finally {
      held.destroy();
    }

    await page.check('#only-deny');
    expect(await page.locator('#decisions tbody tr.allow:visible').count()).toBe(0);
    await page.uncheck('#only-deny');

    // login throttles appear in their table (the page polls /api/state every 3 s)
    expect(await page.isVisible('#locks-empty')).toBe(true);
    for (let i = 0; i < 5; i++) await t!.gh.runtime.policy.authenticate({ service: 'smtp', ip: '127.0.0.30', identity: { kind: 'none' }, session: 'x' }, 'mallory', 'wrong-password-1', true);
    await expect.poll(() => page.textContent('#locks tbody'), { timeout: 15_000 }).toContain('127.0.0.30');
    const throttles = (await page.textContent('#locks tbody')) ?? '';
    expect(throttles).toContain('mallory');
    expect(throttles).toContain('(unfamiliar)');
    expect(await page.isVisible('#locks-empty')).toBe(false);

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'status-page.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(fs.statSync(shot).size).toBeGreaterThan(1000);
    expect(errors).toEqual([]);
  }, 60_000);
});
