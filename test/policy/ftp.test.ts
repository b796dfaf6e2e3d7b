import { describe, expect, it } from 'vitest';
import { decideActiveTarget, decideAnonymousLogin, decideControlInput, decideDataProtection, decideDataTls, decideIsolationSwitch, decidePassiveSource, decideProt, decideSite } from '../../src/policy/ftp.js';

describe('decideActiveTarget (FTP bounce)', () => {
  const base = { activeMode: true, epsvAll: false, clientIp: '127.0.0.20' };
  const rows: Array<[string, Partial<typeof base> & { host: string | null; port: number | null }, boolean, string]> = [
    ['off by default', { activeMode: false, host: '127.0.0.20', port: 40000 }, false, 'ftp.active_mode'],
    ['EPSV ALL forbids PORT', { epsvAll: true, host: '127.0.0.20', port: 40000 }, false, 'ftp.active_mode'],
    ['client itself, high port', { host: '127.0.0.20', port: 40000 }, true, 'ftp.port_ok'],
    ['client itself as v4-mapped v6', { host: '::ffff:127.0.0.20', port: 40000 }, true, 'ftp.port_ok'],
    ['third-party address', { host: '127.0.0.30', port: 40000 }, false, 'ftp.port_foreign'],
    ['third-party with leading zeros', { host: '127.0.0.020', port: 40000 }, false, 'ftp.port_syntax'],
    ['client itself, privileged port (its SMTP)', { host: '127.0.0.20', port: 25 }, false, 'ftp.port_privileged'],
    ['port 0', { host: '127.0.0.20', port: 0 }, false, 'ftp.port_syntax'],
    ['port out of range', { host: '127.0.0.20', port: 70000 }, false, 'ftp.port_syntax'],
    ['no address', { host: null, port: 40000 }, false, 'ftp.port_syntax'],
  ];
  it.each(rows)('%s', (_n, f, allow, rule) => {
    const d = decideActiveTarget({ ...base, ...f });
    expect([d.allow, d.rule]).toEqual([allow, rule]);
  });
});

describe('decideAnonymousLogin', () => {
  it('is off unless enabled', () => {
    expect(decideAnonymousLogin(false).rule).toBe('anonymous.disabled');
    expect(decideAnonymousLogin(false).allow).toBe(false);
    expect(decideAnonymousLogin(true).allow).toBe(true);
  });
});

describe('decideDataTls (PROT P data connection bound to the control session)', () => {
  const rows: Array<[string, { requireReuse: boolean; resumed: boolean }, boolean, string]> = [
    ['resumed from the control connection', { requireReuse: true, resumed: true }, true, 'ftp.data_tls_resumed'],
    ['a fresh TLS session (a thief, or a client that cannot resume)', { requireReuse: true, resumed: false }, false, 'ftp.data_tls_not_resumed'],
    ['fresh, but the operator turned the check off (ftplib)', { requireReuse: false, resumed: false }, true, 'ftp.data_tls_reuse_off'],
    ['resumed with the check off', { requireReuse: false, resumed: true }, true, 'ftp.data_tls_resumed'],
  ];
  it.each(rows)('%s', (_n, f, allow, rule) => {
    const d = decideDataTls(f);
    expect([d.allow, d.rule]).toEqual([allow, rule]);
  });
});

describe('decideIsolationSwitch', () => {
  it.each([
    [true, false, 'ftp.isolation_switch'],
    [false, true, 'ftp.isolation_settled'],
  ])('pending %s -> allow %s by %s', (pending, allow, rule) => {
    const d = decideIsolationSwitch(pending);
    expect([d.allow, d.rule]).toEqual([allow, rule]);
  });
});

describe('decideControlInput (line length, pipelining)', () => {
  const limits = { maxLine: 2048, maxQueued: 64 };
  const rows: Array<[string, { longestLine: number; queued: number }, boolean, string]> = [
    ['an ordinary command', { longestLine: 12, queued: 1 }, true, 'ftp.input_ok'],
    ['a line exactly at the limit', { longestLine: 2048, queued: 1 }, true, 'ftp.input_ok'],
    ['one byte over the limit (still arriving or complete)', { longestLine: 2049, queued: 0 }, false, 'ftp.line_length'],
    ['exactly the queue limit', { longestLine: 10, queued: 64 }, true, 'ftp.input_ok'],
    ['one command over the queue limit', { longestLine: 10, queued: 65 }, false, 'ftp.pipelining'],
    ['both over: the line is named first', { longestLine: 5000, queued: 100 }, false, 'ftp.line_length'],
  ];
  it.each(rows)('%s', (_n, f, allow, rule) => {
    const d = decideControlInput({ ...f, ...limits });
    expect([d.allow, d.rule]).toEqual([allow, rule]);
  });
});

describe('decideSite', () => {
  it('refuses every SITE command', () => {
    const d = decideSite();
    expect([d.allow, d.rule]).toEqual([false, 'ftp.site']);
  });
});

describe('decideProt (RFC 4217 protection level)', () => {
  const rows: Array<[string, boolean, boolean, string]> = [
    ['P', true, true, 'ftp.prot_private'],
    ['P', false, true, 'ftp.prot_private'],
    ['C', false, true, 'ftp.prot_clear_allowed'],
    ['C', true, false, 'ftp.prot_clear'],
    ['S', false, false, 'ftp.prot_unsupported'],
    ['E', true, false, 'ftp.prot_unsupported'],
    ['X\r\nUSER', false, false, 'ftp.prot_unsupported'],
    ['', true, false, 'ftp.prot_unsupported'],
  ];
  it.each(rows)('PROT %j with tls_required %s -> allow %s by %s', (level, tlsRequired, allow, rule) => {
    const d = decideProt({ level, tlsRequired });
    expect([d.allow, d.rule]).toEqual([allow, rule]);
  });
});

describe('decideDataProtection (a transfer of a TLS session before PROT P)', () => {
  const rows: Array<[{ tlsRequired: boolean; secure: boolean; protP: boolean }, boolean, string]> = [
    [{ tlsRequired: true, secure: true, protP: false }, false, 'ftp.prot_required'],
    [{ tlsRequired: true, secure: true, protP: true }, true, 'ftp.data_protection_ok'],
    [{ tlsRequired: false, secure: true, protP: false }, true, 'ftp.data_protection_ok'],
    // a plain control connection never reaches a transfer under tls_required (login needs TLS); not this rule's job
    [{ tlsRequired: true, secure: false, protP: false }, true, 'ftp.data_protection_ok'],
  ];
  it.each(rows)('%j -> allow %s by %s', (f, allow, rule) => {
    const d = decideDataProtection(f);
    expect([d.allow, d.rule]).toEqual([allow, rule]);
  });
});

describe('decidePassiveSource (who may connect to a passive port)', () => {
  const rows: Array<[string, string, string, boolean, string]> = [
    ['the client itself', '127.0.0.1', '127.0.0.1', true, 'ftp.pasv_client'],
    ['the client, IPv4-mapped on a dual-stack socket', '127.0.0.1', '::ffff:127.0.0.1', true, 'ftp.pasv_client'],
    ['IPv6 client, another spelling', '2001:db8::1', '2001:DB8:0:0:0:0:0:1', true, 'ftp.pasv_client'],
    ['another host racing the client (a thief)', '127.0.0.1', '127.0.0.66', false, 'ftp.pasv_foreign'],
    ['a neighbour in the same /24', '192.0.2.10', '192.0.2.11', false, 'ftp.pasv_foreign'],
    ['garbage for an address', '127.0.0.1', 'not-an-ip', false, 'ftp.pasv_foreign'],
  ];
  it.each(rows)('%s', (_n, clientIp, from, allow, rule) => {
    const d = decidePassiveSource({ clientIp, from });
    expect([d.allow, d.rule]).toEqual([allow, rule]);
  });
});
