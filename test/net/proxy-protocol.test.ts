/*
 * The PROXY header parser: table of valid and invalid headers (v1 and v2), then a seeded fuzz: random bytes,
 * mutated valid headers and every prefix of them. Invariants: it never throws; a header never claims more
 * bytes than it was given nor more than the bounds; a strict prefix of a valid header is `incomplete`, never
 * `none` or a different header; appending bytes to a decided input never changes the decision.
 */
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { rng } from '../../bench/fuzz/fuzzer.js';
import { MAX_HEADER_BYTES, MAX_V1_BYTES, V2_SIGNATURE, buildProxyHeader, parseProxyHeader, startsWithProxySignature, type ProxyParse } from '../../src/net/proxy-protocol.js';

const ascii = (s: string) => Buffer.from(s, 'latin1');
const src4 = { ip: '127.0.0.20', port: 40000 };
const dst4 = { ip: '127.0.0.1', port: 2525 };

function v2(verCmd: number, fam: number, body: Buffer): Buffer {
  const head = Buffer.alloc(16);
  V2_SIGNATURE.copy(head);
  head[12] = verCmd;
  head[13] = fam;
  head.writeUInt16BE(body.length, 14);
  return Buffer.concat([head, body]);
}

describe('parseProxyHeader: v1', () => {
  it.each([
    ['PROXY TCP4 127.0.0.20 127.0.0.1 40000 2525\r\n', 'tcp4', '127.0.0.20', 40000],
    ['PROXY TCP6 2001:db8::1 ::1 65535 0\r\n', 'tcp6', '2001:db8::1', 65535],
    ['PROXY TCP6 ::ffff:10.1.2.3 ::1 1 2\r\n', 'tcp6', '::ffff:10.1.2.3', 1],
  ])('accepts %j', (line, transport, ip, port) => {
    const p = parseProxyHeader(ascii(`${line}EHLO x\r\n`));
    expect(p).toMatchObject({ kind: 'header', version: 1, command: 'proxy', transport, source: { ip, port }, length: line.length });
  });

  it('UNKNOWN is a header without a client (anything up to the CRLF ignored)', () => {
    expect(parseProxyHeader(ascii('PROXY UNKNOWN\r\n'))).toMatchObject({ kind: 'header', transport: 'other', source: null, length: 15 });
    expect(parseProxyHeader(ascii('PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n'))).toMatchObject({ kind: 'header', transport: 'other', source: null });
  });

  it.each([
    ['leading zero in an address (octal reading)', 'PROXY TCP4 010.0.0.1 127.0.0.1 1 2\r\n'],
    ['octet over 255', 'PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n'],
    ['short form', 'PROXY TCP4 127.1 127.0.0.1 1 2\r\n'],
    ['v6 address under TCP4', 'PROXY TCP4 ::1 ::1 1 2\r\n'],
    ['v4 address under TCP6', 'PROXY TCP6 127.0.0.1 127.0.0.1 1 2\r\n'],
    ['leading zero in a port', 'PROXY TCP4 127.0.0.1 127.0.0.1 01 2\r\n'],
    ['port over 65535', 'PROXY TCP4 127.0.0.1 127.0.0.1 65536 2\r\n'],
    ['missing field', 'PROXY TCP4 127.0.0.1 127.0.0.1 1\r\n'],
    ['extra field', 'PROXY TCP4 127.0.0.1 127.0.0.1 1 2 3\r\n'],
    ['double space', 'PROXY TCP4  127.0.0.1 127.0.0.1 1 2\r\n'],
    ['unknown protocol', 'PROXY UDP4 127.0.0.1 127.0.0.1 1 2\r\n'],
    ['bare LF', 'PROXY TCP4 127.0.0.1 127.0.0.1 1 2\n'],
    ['CR without LF', 'PROXY TCP4 127.0.0.1 127.0.0.1 1 2\rX'],
    ['tab', 'PROXY TCP4\t127.0.0.1 127.0.0.1 1 2\r\n'],
    ['no CRLF within 107 bytes', `PROXY UNKNOWN ${'a'.repeat(120)}\r\n`],
  ])('refuses %s', (_name, line) => {
    expect(parseProxyHeader(ascii(line)).kind).toBe('invalid');
  });

  it('waits for the CRLF, and for the first bytes of the signature', () => {
    expect(parseProxyHeader(ascii('PROXY TCP4 127.0.0.1 127.0.0.1 1 2'))).toEqual({ kind: 'incomplete' });
    expect(parseProxyHeader(ascii('PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r'))).toEqual({ kind: 'incomplete' });
    expect(parseProxyHeader(ascii('PRO'))).toEqual({ kind: 'incomplete' });
    expect(parseProxyHeader(Buffer.alloc(0))).toEqual({ kind: 'incomplete' });
  });

  it('is not a header: a protocol command, a TLS ClientHello', () => {
    expect(parseProxyHeader(ascii('EHLO client\r\n'))).toEqual({ kind: 'none' });
    expect(parseProxyHeader(ascii('PROT P\r\n'))).toEqual({ kind: 'none' });
    expect(parseProxyHeader(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]))).toEqual({ kind: 'none' });
  });
});

describe('parseProxyHeader: v2', () => {
  it('TCP/IPv4 PROXY with TLVs skipped and data after', () => {
    const tlv = Buffer.from([0x01, 0x00, 0x02, 0x68, 0x32, 0x05, 0x00, 0x03, 0x61, 0x62, 0x63]);
    const h = buildProxyHeader(2, src4, dst4, tlv);
    const p = parseProxyHeader(Buffer.concat([h, ascii('QUIT\r\n')]));
    expect(p).toMatchObject({ kind: 'header', version: 2, command: 'proxy', transport: 'tcp4', source: src4, destination: dst4, length: h.length });
  });

  it('TCP/IPv6, canonical text; IPv4-mapped becomes IPv4 so v4 access rules still apply', () => {
    expect(parseProxyHeader(buildProxyHeader(2, { ip: '2001:db8::1:0:0:1', port: 7 }, { ip: '::1', port: 8 }))).toMatchObject({ transport: 'tcp6', source: { ip: '2001:db8::1:0:0:1', port: 7 }, destination: { ip: '::1' } });
    expect(parseProxyHeader(buildProxyHeader(2, { ip: '::ffff:10.1.2.3', port: 7 }, { ip: '::1', port: 8 }))).toMatchObject({ source: { ip: '10.1.2.3' } });
    expect(parseProxyHeader(buildProxyHeader(2, { ip: '1:2:3:4:5:6:7:8', port: 7 }, { ip: '::', port: 8 }))).toMatchObject({ source: { ip: '1:2:3:4:5:6:7:8' }, destination: { ip: '::' } });
  });

  it('LOCAL (health check), with or without an address block', () => {
    expect(parseProxyHeader(buildProxyHeader(2, null, null))).toMatchObject({ kind: 'header', command: 'local', length: 16 });
    expect(parseProxyHeader(v2(0x20, 0x11, Buffer.alloc(12)))).toMatchObject({ kind: 'header', command: 'local', length: 28 });
  });

  it('PROXY for a family it takes no client from: UNSPEC, UDP, UNIX', () => {
    for (const fam of [0x00, 0x12, 0x22, 0x31, 0x32]) {
      expect(parseProxyHeader(v2(0x21, fam, Buffer.alloc(216)))).toMatchObject({ kind: 'header', command: 'proxy', transport: 'other', source: null });
    }
  });

  it.each([
    ['version 1 in the binary form', v2(0x11, 0x11, Buffer.alloc(12))],
    ['version 3', v2(0x31, 0x11, Buffer.alloc(12))],
    ['command 2', v2(0x22, 0x11, Buffer.alloc(12))],
    ['family 4', v2(0x21, 0x41, Buffer.alloc(12))],
    ['protocol 3', v2(0x21, 0x13, Buffer.alloc(12))],
    ['IPv4 block too short', v2(0x21, 0x11, Buffer.alloc(11))],
    ['IPv6 block too short', v2(0x21, 0x21, Buffer.alloc(35))],
  ])('refuses %s', (_n, buf) => {
    expect(parseProxyHeader(buf).kind).toBe('invalid');
  });

  it('refuses a length over the bound at once (does not wait for 64 KiB)', () => {
    const head = v2(0x21, 0x11, Buffer.alloc(0));
    head.writeUInt16BE(MAX_HEADER_BYTES, 14);
    expect(parseProxyHeader(head).kind).toBe('invalid');
  });

  it('half a header is incomplete', () => {
    const h = buildProxyHeader(2, src4, dst4);
    for (let n = 1; n < h.length; n++) expect(parseProxyHeader(h.subarray(0, n))).toEqual({ kind: 'incomplete' });
  });
});

describe('startsWithProxySignature', () => {
  it('a whole signature only', () => {
    expect(startsWithProxySignature(ascii('PROXY TCP4 …'))).toBe(true);
    expect(startsWithProxySignature(V2_SIGNATURE)).toBe(true);
    expect(startsWithProxySignature(ascii('PROXY'))).toBe(false);
    expect(startsWithProxySignature(ascii('PROT P\r\n'))).toBe(false);
    expect(startsWithProxySignature(ascii('\r\n'))).toBe(false);
  });
});

describe('parseProxyHeader: seeded fuzz', () => {
  const rand = rng(20_261_206);
  const int = (n: number) => Math.floor(rand() * n);
  const randomIp = (): string => (rand() < 0.5 ? [int(256), int(256), int(256), int(256)].join('.') : Array.from({ length: 8 }, () => int(65536).toString(16)).join(':'));
  const valid = (): Buffer => {
    const s = { ip: randomIp(), port: int(65536) };
    const d = { ip: net.isIP(s.ip) === 6 ? '::1' : '127.0.0.1', port: int(65536) };
    const kind = int(4);
    if (kind === 0) return buildProxyHeader(1, s, d);
    if (kind === 1) return buildProxyHeader(2, null, null, Buffer.alloc(int(40), int(256)));
    return buildProxyHeader(2, s, d, Buffer.alloc(int(300), int(256)));
  };
  const check = (buf: Buffer, p: ProxyParse) => {
    if (p.kind === 'header') {
      expect(p.length).toBeLessThanOrEqual(buf.length);
      expect(p.length).toBeLessThanOrEqual(Math.max(MAX_HEADER_BYTES, MAX_V1_BYTES));
      if (p.source) expect(net.isIP(p.source.ip)).not.toBe(0);
      if (p.source) expect(p.source.port).toBeLessThanOrEqual(65535);
    }
    if (p.kind === 'incomplete') expect(buf.length).toBeLessThanOrEqual(MAX_HEADER_BYTES);
  };

  it('valid headers round-trip; every strict prefix is incomplete; extra bytes change nothing', () => {
    for (let i = 0; i < 2000; i++) {
      const h = valid();
      const p = parseProxyHeader(h);
      expect(p.kind).toBe('header');
      if (p.kind !== 'header') return;
      expect(p.length).toBe(h.length);
      const cut = 1 + int(h.length - 1);
      expect(parseProxyHeader(h.subarray(0, cut)).kind).toBe('incomplete');
      const more = Buffer.concat([h, Buffer.alloc(1 + int(50), int(256))]);
      expect(parseProxyHeader(more)).toEqual(p);
    }
  });

  it('random and mutated input never throws and keeps the bounds; decisions are stable under appended bytes', () => {
    for (let i = 0; i < 20_000; i++) {
      let buf: Buffer;
      const mode = int(3);
      if (mode === 0) buf = Buffer.from(Array.from({ length: int(200) }, () => int(256)));
      else {
        buf = Buffer.from(valid());
        const flips = 1 + int(4);
        for (let f = 0; f < flips; f++) buf[int(buf.length)] = mode === 1 ? int(256) : buf[int(buf.length)]!;
        if (rand() < 0.3) buf = buf.subarray(0, int(buf.length + 1));
      }
      let p: ProxyParse = { kind: 'incomplete' };
      expect(() => (p = parseProxyHeader(buf))).not.toThrow();
      check(buf, p);
      if (p.kind !== 'incomplete') expect(parseProxyHeader(Buffer.concat([buf, Buffer.from([int(256)])]))).toEqual(p);
    }
  });
});
