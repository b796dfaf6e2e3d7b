/*
 * The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2): a pure, incremental, bounded
 * parser. It is fed the bytes received so far and says `incomplete` (wait for more), `none` (this is not a
 * PROXY header), `invalid` (abort the connection) or `header` (with how many bytes it used).
 *
 * Written here rather than taken from npm (proxy-protocol-js 4.0.6, the one maintained JS parser) because
 * the receiver has to be strict and bounded, which that library is not: its v1 addresses are `[^ ]+` (so
 * `010.0.0.1`, whose leading zero the spec forbids to avoid the octal reading, or `999.1.1.1` pass), it parses
 * only whole buffers (no difference between "wait for more" and "garbage"), copies the rest of the stream
 * and throws non-Error objects. Here: v1 only within 107 bytes with an exact CRLF and canonical fields (net.isIP,
 * no leading zeros), v2 only with version 2, a known command and family, an address block as long as its
 * family needs and a total under MAX_HEADER_BYTES; TLVs are skipped unread. Fuzzed in
 * test/net/proxy-protocol.test.ts.
 */
import net from 'node:net';
import { normalizeIp } from '../policy/network.js';

/** The 12 bytes every v2 header starts with. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** The longest v1 line the spec allows, CRLF included. */
export const MAX_V1_BYTES = 107;
/**
 * The longest v2 header accepted (16 fixed bytes + addresses + TLVs). The 16-bit length field allows 64 KiB;
 * what HAProxy sends (addresses, ALPN, authority, unique-id up to 128 bytes, SSL details, CRC) stays far below.
 */
export const MAX_HEADER_BYTES = 4096;

export interface ProxyEndpoint {
  readonly ip: string;
  readonly port: number;
}

export type ProxyTransport = 'tcp4' | 'tcp6' | 'other';

export type ProxyParse =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'none' }
  | { readonly kind: 'invalid'; readonly reason: string }
  | {
      readonly kind: 'header';
      readonly version: 1 | 2;
      /** `local`: the proxy's own connection (a health check); `proxy`: relayed for the client in `source` */
      readonly command: 'proxy' | 'local';
      /** `other`: a family or protocol this server does not take a client address from (UNKNOWN, UNIX, UDP, UNSPEC) */
      readonly transport: ProxyTransport;
      readonly source: ProxyEndpoint | null;
      readonly destination: ProxyEndpoint | null;
      /** bytes of the header; the protocol's own data starts after them */
      readonly length: number;
    };

const INCOMPLETE: ProxyParse = Object.freeze({ kind: 'incomplete' });
const NONE: ProxyParse = Object.freeze({ kind: 'none' });
const invalid = (reason: string): ProxyParse => ({ kind: 'invalid', reason });

/** Do the first bytes agree with `sig` as far as both go? */
function prefixOf(buf: Buffer, sig: Buffer): boolean {
  const n = Math.min(buf.length, sig.length);
  for (let i = 0; i < n; i++) if (buf[i] !== sig[i]) return false;
  return true;
}

/** A whole signature (v1 `PROXY ` or the v2 block) at the start of `buf`: a client that meant to send a header. */
export function startsWithProxySignature(buf: Buffer): boolean {
  return (buf.length >= V1_PREFIX.length && prefixOf(buf, V1_PREFIX)) || (buf.length >= V2_SIGNATURE.length && prefixOf(buf, V2_SIGNATURE));
}

export function parseProxyHeader(buf: Buffer): ProxyParse {
  if (buf.length === 0) return INCOMPLETE;
  if (prefixOf(buf, V2_SIGNATURE)) return buf.length < V2_SIGNATURE.length ? INCOMPLETE : parseV2(buf);
  if (prefixOf(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? INCOMPLETE : parseV1(buf);
  return NONE;
}

const PORT = /^(?:0|[1-9]\d{0,4})$/;

function port(text: string): number | null {
  if (!PORT.test(text)) return null;
  const n = Number(text);
  return n <= 65535 ? n : null;
}

function parseV1(buf: Buffer): ProxyParse {
  const limit = Math.min(buf.length, MAX_V1_BYTES);
  let end = -1;
  for (let i = 0; i < limit; i++) {
    const c = buf[i]!;
    if (c === 0x0d) {
      if (i + 1 >= buf.length) return buf.length >= MAX_V1_BYTES ? invalid('v1 line longer than 107 bytes') : INCOMPLETE;
      if (buf[i + 1] !== 0x0a) return invalid('v1 line has a CR without LF');
      end = i;
      break;
    }
    if (c < 0x20 || c > 0x7e) return invalid('v1 line has a control or non-ASCII byte');
  }
  if (end < 0) return buf.length >= MAX_V1_BYTES ? invalid('v1 line longer than 107 bytes') : INCOMPLETE;
  const length = end + 2;
  const fields = buf.toString('latin1', 0, end).split(' ');
  const proto = fields[1];
  if (proto === 'UNKNOWN') {
    // the spec: anything up to the CRLF is to be ignored
    return { kind: 'header', version: 1, command: 'proxy', transport: 'other', source: null, destination: null, length };
  }
  if (proto !== 'TCP4' && proto !== 'TCP6') return invalid('v1 protocol is not TCP4, TCP6 or UNKNOWN');
  if (fields.length !== 6) return invalid('v1 line does not have exactly six fields');
  const family = proto === 'TCP4' ? 4 : 6;
  const [, , src, dst, sport, dport] = fields as [string, string, string, string, string, string];
  if (net.isIP(src) !== family || net.isIP(dst) !== family) return invalid(`v1 address is not a canonical IPv${family} address`);
  const sp = port(sport);
  const dp = port(dport);
  if (sp === null || dp === null) return invalid('v1 port is not a decimal 0..65535 without leading zeros');
  return { kind: 'header', version: 1, command: 'proxy', transport: family === 4 ? 'tcp4' : 'tcp6', source: { ip: src, port: sp }, destination: { ip: dst, port: dp }, length };
}

/**
 * RFC 5952 text of 16 address bytes, by the one address normaliser (policy/network.ts): an IPv4-mapped address
 * (::ffff:a.b.c.d) becomes the dotted IPv4 form, so an IPv4 client relayed over IPv6 still meets the IPv4 rules.
 */
function ipv6(buf: Buffer, at: number): string {
  const words: string[] = [];
  for (let i = 0; i < 8; i++) words.push(buf.readUInt16BE(at + i * 2).toString(16));
  const full = words.join(':');
  return normalizeIp(full) ?? full;
}

function parseV2(buf: Buffer): ProxyParse {
  if (buf.length < 16) return INCOMPLETE;
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return invalid(`v2 version ${verCmd >> 4} is not 2`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return invalid(`v2 command ${cmd} is neither LOCAL nor PROXY`);
  const fam = buf[13]!;
  const family = fam >> 4;
  const proto = fam & 0x0f;
  if (family > 3 || proto > 2) return invalid(`v2 family/protocol byte 0x${fam.toString(16).padStart(2, '0')} is not defined`);
  const len = buf.readUInt16BE(14);
  const length = 16 + len;
  if (length > MAX_HEADER_BYTES) return invalid(`v2 header of ${length} bytes is longer than ${MAX_HEADER_BYTES}`);
  if (buf.length < length) return INCOMPLETE;
  if (cmd === 0) return { kind: 'header', version: 2, command: 'local', transport: 'other', source: null, destination: null, length };
  if (proto === 1 && family === 1) {
    if (len < 12) return invalid('v2 TCP/IPv4 address block shorter than 12 bytes');
    const src = `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`;
    const dst = `${buf[20]}.${buf[21]}.${buf[22]}.${buf[23]}`;
    return { kind: 'header', version: 2, command: 'proxy', transport: 'tcp4', source: { ip: src, port: buf.readUInt16BE(24) }, destination: { ip: dst, port: buf.readUInt16BE(26) }, length };
  }
  if (proto === 1 && family === 2) {
    if (len < 36) return invalid('v2 TCP/IPv6 address block shorter than 36 bytes');
    return { kind: 'header', version: 2, command: 'proxy', transport: 'tcp6', source: { ip: ipv6(buf, 16), port: buf.readUInt16BE(48) }, destination: { ip: ipv6(buf, 32), port: buf.readUInt16BE(50) }, length };
  }
  return { kind: 'header', version: 2, command: 'proxy', transport: 'other', source: null, destination: null, length };
}

/** Build a header (tests, the bench, `gatehouse audit`): v1 text or v2 binary, PROXY or LOCAL. */
export function buildProxyHeader(version: 1 | 2, src: ProxyEndpoint | null, dst: ProxyEndpoint | null, tlv: Buffer = Buffer.alloc(0)): Buffer {
  if (version === 1) {
    if (!src || !dst) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
    const fam = net.isIP(src.ip) === 6 ? 'TCP6' : 'TCP4';
    return Buffer.from(`PROXY ${fam} ${src.ip} ${dst.ip} ${src.port} ${dst.port}\r\n`, 'latin1');
  }
  if (!src || !dst) {
    const head = Buffer.alloc(16);
    V2_SIGNATURE.copy(head);
    head[12] = 0x20;
    head[13] = 0x00;
    head.writeUInt16BE(tlv.length, 14);
    return Buffer.concat([head, tlv]);
  }
  const v6 = net.isIP(src.ip) === 6;
  const addrLen = v6 ? 36 : 12;
  const head = Buffer.alloc(16 + addrLen);
  V2_SIGNATURE.copy(head);
  head[12] = 0x21;
  head[13] = v6 ? 0x21 : 0x11;
  head.writeUInt16BE(addrLen + tlv.length, 14);
  if (v6) {
    writeV6(head, 16, src.ip);
    writeV6(head, 32, dst.ip);
    head.writeUInt16BE(src.port, 48);
    head.writeUInt16BE(dst.port, 50);
  } else {
    src.ip.split('.').forEach((o, i) => (head[16 + i] = Number(o)));
    dst.ip.split('.').forEach((o, i) => (head[20 + i] = Number(o)));
    head.writeUInt16BE(src.port, 24);
    head.writeUInt16BE(dst.port, 26);
  }
  return Buffer.concat([head, tlv]);
}

function writeV6(buf: Buffer, at: number, text: string): void {
  const tail = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  const ip = tail ? `${tail[1]}${((Number(tail[2]) << 8) | Number(tail[3])).toString(16)}:${((Number(tail[4]) << 8) | Number(tail[5])).toString(16)}` : text;
  const [left, right] = ip.includes('::') ? (ip.split('::') as [string, string]) : [ip, null];
  const l = left ? left.split(':') : [];
  const r = right === null ? [] : right ? right.split(':') : [];
  const words = [...l, ...Array<string>(8 - l.length - r.length).fill('0'), ...r];
  words.forEach((w, i) => buf.writeUInt16BE(parseInt(w, 16), at + i * 2));
}
