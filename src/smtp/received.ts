/*
 * The Received: trace header prepended to every accepted message, in Postfix's layout: client HELO and
 * address, TLS protocol and cipher, the authenticated user only when `smtp.received.show_auth_user` is on
 * (Postfix's smtpd_sasl_authenticated_header, off by default: the login name is half a credential and travels
 * with the message to every recipient), our host name, protocol (SMTP/ESMTP/ESMTPS/ESMTPA/ESMTPSA) and queue
 * id (so a header found in a recipient's mailbox leads straight to the log line), the recipient when there is
 * only one, and an RFC 5322 date. Every client-supplied value is reduced to safe printable characters.
 */

export interface ReceivedInfo {
  readonly helo: string;
  readonly clientIp: string;
  readonly hostname: string;
  /** 'HELO' or 'EHLO' */
  readonly opening: string;
  readonly tls: { readonly version: string; readonly cipher: string; readonly bits?: number } | null;
  /** the authenticated user (makes the protocol ...A); named in the header only with showAuthUser */
  readonly user: string | null;
  readonly showAuthUser?: boolean;
  /** the queue id the message is stored under */
  readonly queueId?: string;
  readonly recipients: readonly string[];
  readonly date?: Date;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 5322 date-time in UTC, e.g. `Tue, 01 Dec 2026 17:45:43 +0000`. */
export function rfc5322Date(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${p(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

/** Keep only characters that cannot break out of a header comment or line. */
function safe(value: string, max = 255): string {
  const s = value.replace(/[^\x21-\x7e]/g, '?').replace(/[()\\<>;]/g, '?');
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

export function protocolName(opening: string, tls: boolean, authenticated: boolean): string {
  if (opening.toUpperCase() !== 'EHLO') return 'SMTP';
  return `ESMTP${tls ? 'S' : ''}${authenticated ? 'A' : ''}`;
}

/** The header, folded, ending in CRLF. */
export function receivedHeader(info: ReceivedInfo): string {
  const lines: string[] = [];
  const helo = info.helo ? safe(info.helo) : 'unknown';
  const ip = safe(info.clientIp, 64);
  lines.push(`Received: from ${helo} (${ip.includes(':') ? `[IPv6:${ip}]` : `[${ip}]`})`);
  if (info.tls) {
    const bits = info.tls.bits ? ` (${info.tls.bits}/${info.tls.bits} bits)` : '';
    lines.push(`\t(using ${safe(info.tls.version, 32)} with cipher ${safe(info.tls.cipher, 64)}${bits})`);
  }
  if (info.user && info.showAuthUser) lines.push(`\t(Authenticated sender: ${safe(info.user, 64)})`);
  const proto = protocolName(info.opening, info.tls !== null, info.user !== null);
  const only = info.recipients.length === 1 ? info.recipients[0] : undefined;
  lines.push(`\tby ${safe(info.hostname)} (Gatehouse) with ${proto}${info.queueId ? ` id ${safe(info.queueId, 64)}` : ''}`);
  lines.push(`\t${only ? `for <${safe(only, 254)}>; ` : ''}${rfc5322Date(info.date ?? new Date())}`);
  return `${lines.join('\r\n')}\r\n`;
}
