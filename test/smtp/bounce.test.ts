import { describe, expect, it } from 'vitest';
import { buildBounce, originalHeaders, statusOf } from '../../src/smtp/bounce.js';

describe('bounce (RFC 3464 DSN)', () => {
  it.each([
    ['550 5.1.1 <x@y>: Recipient address rejected', true, '5.1.1'],
    ['552-5.2.2 Mailbox full', true, '5.2.2'],
    ['554 no enhanced code', true, '5.0.0'],
    ['451 4.7.1 greylisted', false, '4.7.1'],
    ['', false, '4.0.0'],
  ])('status of %j', (reply, permanent, status) => {
    expect(statusOf(reply, permanent)).toBe(status);
  });

  it('is a multipart/report with the delivery-status part and only the original headers', () => {
    const original = Buffer.from('Received: from x\r\nSubject: hello\r\nFrom: <a@example.org>\r\n\r\nSECRET BODY\r\n');
    const dsn = buildBounce({
      hostname: 'gh.test',
      originalSender: 'a@example.org',
      originalId: 'abcdefgh1234',
      arrival: new Date('2026-01-02T03:04:05Z'),
      failed: [
        { address: 'x@example.net', status: '5.1.1', diagnostic: '550 5.1.1 no such user\r\nInjected: header' },
        { address: 'y@example.net', status: '4.4.7', diagnostic: 'expired' },
      ],
      originalData: original,
      now: new Date('2026-01-03T00:00:00Z'),
    }).toString('latin1');
    const boundary = /boundary="([^"]+)"/.exec(dsn)![1]!;
    const parts = dsn.split(`--${boundary}`);
    expect(parts).toHaveLength(5); // preamble, 3 parts, closing "--"
    expect(parts[4]).toBe('--\r\n');
    expect(dsn).toMatch(/^From: Mail Delivery System <MAILER-DAEMON@gh\.test>\r\nTo: <a@example\.org>\r\n/);
    expect(dsn).toContain('Auto-Submitted: auto-replied');
    expect(parts[2]).toContain('Content-Type: message/delivery-status\r\n');
    expect(parts[2]).toContain('Reporting-MTA: dns; gh.test\r\n');
    expect(parts[2]).toContain('Arrival-Date: Fri, 02 Jan 2026 03:04:05 +0000');
    expect(parts[2]).toMatch(/Final-Recipient: rfc822; x@example\.net\r\nOriginal-Recipient: rfc822; x@example\.net\r\nAction: failed\r\nStatus: 5\.1\.1\r\nDiagnostic-Code: smtp; 550 5\.1\.1 no such user Injected: header\r\n/);
    expect(parts[2]).toContain('Status: 4.4.7');
    expect(parts[3]).toContain('Content-Type: text/rfc822-headers');
    expect(parts[3]).toContain('Subject: hello\r\n');
    expect(dsn).not.toContain('SECRET BODY');
    expect(dsn).not.toMatch(/[^\r]\n/); // CRLF only
    expect(/^Injected:/m.test(dsn)).toBe(false);
  });

  it('caps and sanitises the original headers', () => {
    const h = originalHeaders(Buffer.concat([Buffer.from('X-A: \x00\xff\r\n', 'latin1'), Buffer.alloc(200_000, 'a')]));
    expect(h.length).toBeLessThanOrEqual(64 * 1024);
    expect(h).toMatch(/^X-A: \?\?\r\n/);
  });
});
