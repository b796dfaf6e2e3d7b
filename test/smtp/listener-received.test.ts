/*
 * The Received: header the listener prepends: Postfix layout, TLS and authenticated user noted, and no
 * client-supplied value can break out of its comment or line.
 */
import { describe, expect, it } from 'vitest';
import { protocolName, receivedHeader, rfc5322Date } from '../../src/smtp/received.js';

const date = new Date(Date.UTC(2026, 11, 1, 17, 5, 9));

describe('Received: header', () => {
  const base = {
    helo: 'laptop.example',
    clientIp: '192.0.2.7',
    hostname: 'gatehouse.test',
    opening: 'EHLO',
    tls: { version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' },
    user: 'alice',
    queueId: '0mirk2b3c1f2e3d4c5b6a79',
    recipients: ['bob@example.net'],
    date,
  };

  it('notes TLS, the queue id and the single recipient; the login name only with show_auth_user', () => {
    expect(receivedHeader(base)).toBe(
      'Received: from laptop.example ([192.0.2.7])\r\n' +
        '\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n' +
        '\tby gatehouse.test (Gatehouse) with ESMTPSA id 0mirk2b3c1f2e3d4c5b6a79\r\n' +
        '\tfor <bob@example.net>; Tue, 01 Dec 2026 17:05:09 +0000\r\n',
    );
    expect(receivedHeader({ ...base, showAuthUser: true })).toBe(
      'Received: from laptop.example ([192.0.2.7])\r\n' +
        '\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n' +
        '\t(Authenticated sender: alice)\r\n' +
        '\tby gatehouse.test (Gatehouse) with ESMTPSA id 0mirk2b3c1f2e3d4c5b6a79\r\n' +
        '\tfor <bob@example.net>; Tue, 01 Dec 2026 17:05:09 +0000\r\n',
    );
  });

  it('leaves out the recipient list when there are several, and marks IPv6', () => {
    const h = receivedHeader({ helo: '', clientIp: '2001:db8::1', hostname: 'gatehouse.test', opening: 'HELO', tls: null, user: null, recipients: ['a@x.test', 'b@y.test'], date });
    expect(h).toBe('Received: from unknown ([IPv6:2001:db8::1])\r\n\tby gatehouse.test (Gatehouse) with SMTP\r\n\tTue, 01 Dec 2026 17:05:09 +0000\r\n');
  });

  it('neutralises hostile HELO and user values', () => {
    const h = receivedHeader({ helo: 'evil\r\nBcc: x@y (a)', clientIp: '192.0.2.7', hostname: 'gatehouse.test', opening: 'EHLO', tls: null, user: 'al)ice\r\nX: y', showAuthUser: true, recipients: [], date });
    expect(h.split('\r\n').filter(Boolean)).toHaveLength(4);
    expect(h).not.toMatch(/\r\n(?!\t)[^\r\n]/);
    expect(h).toContain('(Authenticated sender: al?ice??X:?y)');
  });

  it('names the protocol as Postfix does', () => {
    expect(protocolName('EHLO', false, false)).toBe('ESMTP');
    expect(protocolName('EHLO', true, false)).toBe('ESMTPS');
    expect(protocolName('EHLO', false, true)).toBe('ESMTPA');
    expect(protocolName('HELO', true, true)).toBe('SMTP');
    expect(rfc5322Date(date)).toBe('Tue, 01 Dec 2026 17:05:09 +0000');
  });
});
