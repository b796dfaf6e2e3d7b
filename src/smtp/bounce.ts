/*
 * Non-delivery reports (RFC 3464 DSN in an RFC 6522 multipart/report): a human-readable part, the
 * message/delivery-status part with one block per failed recipient, and the original headers
 * (text/rfc822-headers, so a bounce never carries a large body back). Sent from MAILER-DAEMON with the
 * null sender, so it can never be bounced again. Remote diagnostics are flattened to one ASCII line.
 */
import crypto from 'node:crypto';

export interface FailedRecipient {
  readonly address: string;
  /** enhanced status code, e.g. 5.1.1 or 4.4.7 (expired) */
  readonly status: string;
  readonly diagnostic: string;
}

export interface BounceInput {
  readonly hostname: string;
  readonly originalSender: string;
  readonly originalId: string;
  readonly arrival: Date;
  readonly failed: readonly FailedRecipient[];
  readonly originalData: Buffer;
  readonly now?: Date;
}

const MAX_HEADERS = 64 * 1024;

function oneLine(v: string, max = 900): string {
  return v.replace(/[\r\n\t]+/g, ' ').replace(/[^\x20-\x7e]/g, '?').trim().slice(0, max);
}

/** The header block of the original message (up to the first empty line), capped. */
export function originalHeaders(data: Buffer): string {
  const end = data.indexOf('\r\n\r\n');
  const head = data.subarray(0, end === -1 ? Math.min(data.length, MAX_HEADERS) : Math.min(end + 2, MAX_HEADERS));
  // keep it 7-bit: the part is declared us-ascii
  return head.toString('latin1').replace(/[^\x09\x0a\x0d\x20-\x7e]/g, '?');
}

/** Pull an enhanced status code (x.y.z) out of an SMTP reply, or derive one from the basic code. */
export function statusOf(reply: string, permanent: boolean): string {
  const m = /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(reply.trim());
  if (m?.[1]) return m[1];
  return permanent ? '5.0.0' : '4.0.0';
}

export function buildBounce(b: BounceInput): Buffer {
  const now = b.now ?? new Date();
  const boundary = `=_gatehouse_${crypto.randomBytes(12).toString('hex')}`;
  const host = b.hostname;
  const expired = b.failed.every((f) => f.status.startsWith('4.'));
  const lines: string[] = [];
  const h = (s: string) => lines.push(s);
  h(`From: Mail Delivery System <MAILER-DAEMON@${host}>`);
  h(`To: <${oneLine(b.originalSender, 300)}>`);
  h(`Subject: ${expired ? 'Undelivered Mail Returned to Sender (delivery time expired)' : 'Undelivered Mail Returned to Sender'}`);
  h(`Date: ${now.toUTCString().replace('GMT', '+0000')}`);
  h(`Message-ID: <${b.originalId}.${now.getTime().toString(36)}@${host}>`);
  h('Auto-Submitted: auto-replied');
  h('MIME-Version: 1.0');
  h(`Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`);
  h('');
  h('This is a MIME-encapsulated message.');
  h('');
  h(`--${boundary}`);
  h('Content-Type: text/plain; charset=us-ascii');
  h('Content-Description: Notification');
  h('');
  h(`This is the mail system at host ${host}.`);
  h('');
  h("I'm sorry to have to inform you that your message could not");
  h('be delivered to one or more recipients. It is attached below.');
  h('');
  for (const f of b.failed) h(`<${oneLine(f.address, 300)}>: ${oneLine(f.diagnostic)}`);
  h('');
  h(`--${boundary}`);
  h('Content-Type: message/delivery-status');
  h('Content-Description: Delivery report');
  h('');
  h(`Reporting-MTA: dns; ${host}`);
  h(`X-Gatehouse-Queue-ID: ${b.originalId}`);
  h(`Arrival-Date: ${b.arrival.toUTCString().replace('GMT', '+0000')}`);
  for (const f of b.failed) {
    h('');
    h(`Final-Recipient: rfc822; ${oneLine(f.address, 300)}`);
    h(`Original-Recipient: rfc822; ${oneLine(f.address, 300)}`);
    h('Action: failed');
    h(`Status: ${/^[245]\.\d{1,3}\.\d{1,3}$/.test(f.status) ? f.status : '5.0.0'}`);
    h(`Diagnostic-Code: smtp; ${oneLine(f.diagnostic)}`);
    h(`Last-Attempt-Date: ${now.toUTCString().replace('GMT', '+0000')}`);
  }
  h('');
  h(`--${boundary}`);
  h('Content-Type: text/rfc822-headers');
  h('Content-Description: Undelivered Message Headers');
  h('');
  const headers = originalHeaders(b.originalData).replace(/\r?\n$/, '');
  const out = `${lines.join('\r\n')}\r\n${headers.replace(/\r?\n/g, '\r\n')}\r\n\r\n--${boundary}--\r\n`;
  return Buffer.from(out, 'latin1');
}
