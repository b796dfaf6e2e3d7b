/*
 * `gatehouse check` on the SMTP keys of issue 15: smtp.received.show_auth_user, smtp.relay.smarthost.idle_s
 * (and max_errors, which now governs every error budget): the defaults are clean, a weaker value warns with
 * its key path, a value of the wrong type is a config error naming the key (exit 2).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gatehouse-check-smtp-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, text);
  return f;
}

const smarthost = (extra: string) => `smtp:\n  relay:\n    smarthost: { host: relay.example.net, port: 587${extra} }\n`;

describe('gatehouse check: issue 15 SMTP keys', () => {
  it('defaults (idle_s 2, show_auth_user false) give no warning', async () => {
    const r = await runCli(['--config', file('defaults.yaml', smarthost('')), 'check']);
    expect(r.stdout).not.toMatch(/warning/);
    expect(r.code).toBe(0);
  });

  it('warns for show_auth_user on, a long smarthost idle_s and a lax max_errors (exit 1)', async () => {
    const text = `${smarthost(', idle_s: 120')}  received: { show_auth_user: true }\n  limits: { max_errors: 50 }\n`;
    const r = await runCli(['--config', file('weak.yaml', text), 'check']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/warning: smtp\.received\.show_auth_user: true \(default false\): .*Received:/);
    expect(r.stdout).toMatch(/warning: smtp\.relay\.smarthost\.idle_s: 120 \(default 2\): limit raised: /);
    expect(r.stdout).toMatch(/warning: smtp\.limits\.max_errors: 50 \(default 10\)/);
  });

  it.each([
    ['bad-idle.yaml', smarthost(', idle_s: forever'), /smtp\.relay\.smarthost\.idle_s: got "forever"/],
    ['bad-show.yaml', 'smtp:\n  received: { show_auth_user: maybe }\n', /smtp\.received\.show_auth_user: got "maybe"/],
    ['typo.yaml', 'smtp:\n  received: { show_user: true }\n', /smtp\.received\.show_user: unknown key/],
  ])('%s is a config error naming the key (exit 2)', async (name, text, pattern) => {
    const r = await runCli(['--config', file(name, text), 'check']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(pattern);
  });
});
