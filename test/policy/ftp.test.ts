import { describe, expect, it } from 'vitest';
import { decideActiveTarget, decideAnonymousLogin, decideDataTls, decideIsolationSwitch } from '../../src/policy/ftp.js';

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
